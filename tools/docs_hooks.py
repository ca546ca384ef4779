"""MkDocs hooks (``hooks:`` in ``mkdocs.yml``): the API reference, generated.

One page per public module of `posenc_jax`, made at build time from the package's
files, so a new module (a new scheme, say) gets its page and its place in the
navigation with no docs edit. A module's page is the ``::: module`` directive of
mkdocstrings, which renders its Google-style docstrings; a package's page renders
its docstring and a table of the names it re-exports, each linked to the page of
the module that defines it (a name re-exported from a private module would have
no page, and the strict build fails on the broken link).

Imports neither MkDocs nor griffe at module level, so that the tests can call
`api_modules` without the ``docs`` extra.
"""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "posenc_jax"
API_SECTION = "API reference"


def api_modules(root: Path = ROOT) -> list[str]:
    """Every public module of the package, dotted, each package before its modules.

    Public: no component of the dotted name starts with an underscore
    (``__init__.py`` stands for its package).
    """
    names = []
    for path in (root / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if not any(p.startswith("_") for p in parts):
            names.append(".".join(parts))
    return sorted(names, key=lambda n: n.split("."))


def _source(module: str, root: Path = ROOT) -> Path:
    path = root / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def module_summary(module: str, root: Path = ROOT) -> str:
    """The first line of a module's docstring, read without importing it."""
    doc = ast.get_docstring(ast.parse(_source(module, root).read_text(encoding="utf-8")))
    return (doc or "").strip().split("\n", 1)[0]


def is_package(module: str, root: Path = ROOT) -> bool:
    return _source(module, root).name == "__init__.py"


def page_of(module: str) -> str:
    return f"api/{module}.md"


def api_nav(modules: list[str]) -> list:
    """Navigation: the package's page and modules, then one section per subpackage."""

    def entries(parent: str) -> list:
        out: list = []
        for m in (m for m in modules if m.rpartition(".")[0] == parent):
            if is_package(m):
                out.append({m: [{m: page_of(m)}, *entries(m)]})
            else:
                out.append({m.rpartition(".")[2]: page_of(m)})
        return out

    return [{"Overview": "api/index.md"}, {PACKAGE: page_of(PACKAGE)}, *entries(PACKAGE)]


def overview_page(modules: list[str]) -> str:
    lines = [
        "# API reference",
        "",
        "One page per public module, generated from the docstrings: shapes in the legend",
        "B batch, T query length, S key length, N heads, H head dim, D model dim; what",
        "raises and why; runnable examples (run as tests); the paper each function follows.",
        "The names most code needs are re-exported by [`posenc_jax`](posenc_jax.md) (pure",
        "functions, schemes, attention), [`posenc_jax.nn`](posenc_jax.nn.md) (Flax NNX",
        "modules) and [`posenc_jax.harness`](posenc_jax.harness.md) (experiments).",
        "",
        "| module | what it holds |",
        "|---|---|",
    ]
    for m in modules:
        lines.append(f"| [`{m}`]({m}.md) | {_cell(module_summary(m))} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def package_page(package, modules: list[str]) -> str:
    """A package's page: its docstring, its own public objects, its re-exports."""
    exported = list(package.exports or [])
    own = [n for n in exported if n in package.members and not package.members[n].is_alias]
    members = "[" + ", ".join(own) + "]" if own else "false"
    lines = [f"::: {package.path}", "    options:", f"      members: {members}", ""]
    rows = []
    for name in exported:
        member = package.members.get(name)
        if member is None or not member.is_alias:
            continue
        target = member.final_target
        home = target.parent.path if target.parent else ""
        rows.append(
            f"| [`{name}`][{target.path}] | [`{home}`]({home}.md) | {_cell(_first_line(target))} |"
        )
    if rows:
        lines += ["## Re-exported names", "", "| name | defined in | summary |", "|---|---|---|"]
        lines += rows
    return "\n".join(lines) + "\n"


def _first_line(obj) -> str:
    doc = obj.docstring.value.strip() if obj.docstring else ""
    return doc.split("\n", 1)[0]


_GROUPED = re.compile(r"(?i)parameter '\w+(?:, \w+)+'")


class GroupedParameterFilter(logging.Filter):
    """Drops griffe's two warnings about a grouped item ``a, b: ...`` in ``Args:``.

    Such an item documents several parameters at once (the project's habit, see
    `tools/docs_griffe.py`); griffe reads its name, commas and all, finds no such
    parameter and no annotation, and says so. Every other warning passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not _GROUPED.search(record.getMessage())


def on_startup(**kwargs):
    logging.getLogger("mkdocs.plugins.griffe").addFilter(GroupedParameterFilter())


def on_config(config, **kwargs):
    """Fills the empty ``API reference: []`` section of the navigation."""
    for entry in config["nav"]:
        if isinstance(entry, dict) and API_SECTION in entry:
            entry[API_SECTION] = api_nav(api_modules())
            return config
    raise ValueError(f"mkdocs.yml: the nav needs an empty '{API_SECTION}: []' section")


def on_files(files, config, **kwargs):
    """Adds the generated pages."""
    import griffe
    from mkdocs.structure.files import File

    modules = api_modules()
    loaded = griffe.load(PACKAGE, search_paths=[str(ROOT)], resolve_aliases=True)
    files.append(File.generated(config, "api/index.md", content=overview_page(modules)))
    for m in modules:
        if is_package(m):
            obj = loaded if m == PACKAGE else loaded[m.removeprefix(PACKAGE + ".")]
            content = package_page(obj, modules)
        else:
            content = f"::: {m}\n"
        files.append(File.generated(config, page_of(m), content=content))
    return files
