"""The Colab notebook runs unchanged as a script on this machine's runtime."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "experiments" / "colab.ipynb"


def test_colab_notebook_runs_as_a_script(tmp_path):
    nb = json.loads(NOTEBOOK.read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(cells) >= 3
    script = tmp_path / "notebook.py"
    script.write_text("\n\n".join(cells))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "POSENC_NOTEBOOK_SMOKE": "1",
    }
    env.pop("POSENC_REPO_URL", None)
    res = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "runs" / "colab" / "results.jsonl").is_file()
    assert (tmp_path / "runs" / "colab" / "length_copy.png").is_file()
