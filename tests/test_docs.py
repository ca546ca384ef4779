"""The docs stay true: their code runs, their figures exist, the API reference is complete.

The strict MkDocs build (`.ci/run`) checks links, anchors, cross-references and
docstrings; these tests need no docs extra and check what the build cannot: that the
``python`` blocks of README.md and docs/ run, page by page in one namespace, in order
(a block preceded by ``<!-- not run: reason -->`` is skipped), that every image a page
shows exists and stays small, that the figures tool reads every results table, and
that every public name lives in a module that has an API page.
"""

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!-- not run: (?P<why>[^>]*\S)\s*-->\s*$")


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python_blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """(line, code, reason not run or None) of each ```python block of a page."""
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        if m["info"].split()[:1] != ["python"]:
            continue
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = NOT_RUN.search(before)
        out.append((text.count("\n", 0, m.start()) + 2, m["code"], skip and skip["why"]))
    return out


PAGES_WITH_CODE = [p for p in PAGES if any(why is None for _, _, why in python_blocks(p))]


def test_pages_have_code_and_few_blocks_are_not_run():
    assert ROOT / "README.md" in PAGES_WITH_CODE
    assert len(PAGES_WITH_CODE) >= 6
    skipped = [(p.name, line) for p in PAGES for line, _, why in python_blocks(p) if why]
    assert len(skipped) <= 4, skipped


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, monkeypatch):
    monkeypatch.chdir(ROOT)  # blocks may name repository files (configs/...)
    namespace: dict = {"__name__": "__docs__"}
    for line, code, why in python_blocks(page):
        if why is None:
            exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), namespace)


def test_images_exist_and_are_small():
    image = re.compile(r"!\[[^\]]*\]\(([^)\s]+\.png)\)")
    shown = set()
    for page in PAGES:
        for target in image.findall(page.read_text(encoding="utf-8")):
            path = (page.parent / target).resolve()
            assert path.is_file(), f"{page.relative_to(ROOT)} shows a missing {target}"
            shown.add(path)
    assert ROOT / "docs/images/reproductions/alibi_lm/length_lm.png" in shown
    for path in (ROOT / "docs" / "images").rglob("*.png"):
        assert path.stat().st_size < 100_000, f"{path} is over 100 KB"


def test_figures_tool_reads_every_results_table(tmp_path):
    figures = _tool("docs_figures")
    pages = ROOT / "docs" / "reproductions"
    alibi = figures.records_by_length(pages / "alibi_lm.md", task="lm", metric="perplexity")
    assert len(alibi) == 8 * 5 and {r["train_length"] for r in alibi} == {64}
    schemes = {"sinusoidal", "rotary", "T5 bias", "ALiBi", "NoPE", "Transformer-XL", "DeBERTa"}
    assert {r["scheme"] for r in alibi} == schemes | {"TUPE"}
    recent = figures.records_by_length(
        pages / "recent_schemes_lm.md", task="lm", metric="perplexity"
    )
    assert len(recent) == 7 * 5 and {r["scheme"] for r in recent} >= {"FoX", "CoPE", "PoPE"}
    rope = figures.records_by_length(pages / "rope_extension.md", task="lm", metric="perplexity")
    assert len(rope) == 4 * 6 + 3 * 5 and sum(r["scheme"].endswith("+ft") for r in rope) == 15
    train = figures.KAZEMNEJAD_TRAIN
    kaz = figures.records_by_column(
        pages / "kazemnejad.md", metric="accuracy", scale=0.01, train_lengths=train
    )
    assert len(kaz) == 5 * 6 and {r["train_length"] for r in kaz} == {20}
    summary, from_runs = figures.chomsky_summary(tmp_path)  # no runs there: the table
    # ALiBi three times (two tie-breaks, random distances), XL and T5 twice, DeBERTa, TUPE
    assert not from_runs and all(len(s) == 14 for s in summary.values())
    assert summary["bucket_sort"]["Shaw"] == [98.5, 92.9, 97.8, 97.1]


def test_api_reference_has_a_page_for_every_module_with_public_names():
    hooks = _tool("docs_hooks")
    modules = hooks.api_modules()
    assert {"posenc_jax", "posenc_jax.rope.rotation", "posenc_jax.harness.cli"} <= set(modules)
    assert not [m for m in modules if "._" in m or m.startswith("_")]

    def pages(nav) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, dict):
            return [p for v in nav.values() for p in pages(v)]
        return [p for v in nav for p in pages(v)]

    assert sorted(pages(hooks.api_nav(modules))) == sorted(
        ["api/index.md", *(hooks.page_of(m) for m in modules)]
    )
    for package in ("posenc_jax", "posenc_jax.rope", "posenc_jax.schemes", "posenc_jax.nn"):
        mod = importlib.import_module(package)
        for name in mod.__all__:
            home = getattr(getattr(mod, name), "__module__", None)
            if home is not None and home.startswith("posenc_jax"):
                assert home in modules, f"{package}.{name} is defined in {home}, which has no page"


def test_the_presets_table_of_the_docs_is_the_librarys():
    from posenc_jax.presets import presets_table_markdown

    page = (ROOT / "docs" / "guides" / "pretrained.md").read_text()
    assert presets_table_markdown().strip() in page
