"""What `pip install posenc-jax` adds, and the experiment scripts of the reproductions.

The wheel must add one importable name, `posenc_jax`: research repositories often have
an `experiments/` package of their own, and the `posenc` command must work beside it.
"""

import os
import re
import runpy
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip"]
TINY_OVERRIDES = [
    "schemes=[alibi]",
    "seeds=[0]",
    "tasks=[{name: copy, num_symbols: 5}]",
    "model={num_layers: 1, d_model: 16, num_heads: 2}",
    "train.steps=2",
    "train.batch_size=4",
    "eval.lengths=[4, 8]",
    "eval.batch_size=4",
]


def _source_copy(dest: Path) -> Path:
    """The project's files (tracked or not ignored), without outputs of runs or builds."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _source_copy(tmp / "src")
    subprocess.run(
        [
            *PIP,
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(src),
            "-w",
            str(tmp / "dist"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (found,) = (tmp / "dist").glob("posenc_jax-*.whl")
    return found


def test_the_wheel_holds_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
        top_level = next(n for n in zf.namelist() if n.endswith(".dist-info/top_level.txt"))
        assert zf.read(top_level).decode().split() == ["posenc_jax"]
        assert "posenc_jax/harness/cli.py" in zf.namelist()
    assert {t for t in tops if not t.endswith(".dist-info")} == {"posenc_jax"}, tops


def test_installed_wheel_runs_beside_a_folder_with_its_own_experiments_package(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
        timeout=120,
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [*PIP, "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    added = {p.name for p in site.iterdir() if not p.name.endswith(".dist-info")}
    assert added == {"posenc_jax"}, added

    project = tmp_path / "research"  # a user's repository with an experiments/ package
    (project / "experiments").mkdir(parents=True)
    (project / "experiments" / "__init__.py").write_text("OWNER = 'the user'\n")
    (project / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "quick.yaml", project / "configs" / "quick.yaml")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(
        [python, "-c", "import experiments, posenc_jax; print(experiments.OWNER);"
         "print(posenc_jax.__file__)"],
        cwd=project, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    owner, location = probe.stdout.splitlines()
    assert owner == "the user"
    assert Path(location).is_relative_to(site)

    # The command, kept cheap: one scheme, one seed, the copy task only.
    smaller = [a for o in TINY_OVERRIDES[:3] for a in ("--set", o)]
    res = subprocess.run(
        [venv / "bin" / "posenc", "run", "configs/quick.yaml", "--set", "train.steps=2", *smaller],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| alibi |" in res.stdout
    assert (project / "runs" / "quick" / "results.jsonl").is_file()


REPRODUCTIONS = ROOT / "docs" / "reproductions"


def _reproduction_pages() -> list[Path]:
    return sorted(p for p in REPRODUCTIONS.glob("*.md") if p.name != "index.md")


def test_every_reproduction_page_has_its_script_and_config():
    names = [p.stem for p in _reproduction_pages()]
    assert {"alibi_lm", "kazemnejad", "chomsky", "rope_extension"} <= set(names), names
    index = (REPRODUCTIONS / "index.md").read_text()
    for page in _reproduction_pages():
        name, text = page.stem, page.read_text()
        assert f"python experiments/{name}.py" in text, page
        assert f"configs/{name}.yaml" in text, page
        assert sorted(set(re.findall(r"python experiments/(\w+)\.py", text))) == [name], page
        assert f"({name}.md)" in index, f"{page.name} is not listed in reproductions/index.md"
        script = (ROOT / "experiments" / f"{name}.py").read_text()
        assert f'"configs" / "{name}.yaml"' in script
        assert f"docs/reproductions/{name}.md" in script
        assert (ROOT / "configs" / f"{name}.yaml").is_file()
    assert not (ROOT / "experiments" / "__init__.py").exists(), "experiments/ holds scripts"


def test_a_reproduction_script_runs_with_overrides(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["kazemnejad.py", *TINY_OVERRIDES])
    runpy.run_path(str(ROOT / "experiments" / "kazemnejad.py"), run_name="__main__")
    assert "| alibi |" in capsys.readouterr().out
    assert (tmp_path / "runs" / "kazemnejad" / "results.jsonl").is_file()
