"""The accelerator check keeps working where no accelerator is lent: its dry run on the CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_accelerator_check_dry_run_writes_every_section(tmp_path):
    out = tmp_path / "accelerator.json"
    res = subprocess.run(
        [sys.executable, "benchmarks/accelerator.py", "--dry-run", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    report = json.loads(out.read_text())
    assert list(report) == ["platform", "tests", "precision", "train", "rope", "long", "job"]
    assert report["platform"]["backend"] == "cpu" and report["platform"]["dry_run"]
    # The marker selects the device-independent files (tests/conftest.py) and nothing else.
    assert report["tests"]["files"] == 11 and report["tests"]["collected"] > 300
    # On the CPU the fused call runs through XLA: the same function as the dense path.
    for name in ("nope", "alibi"):
        for dtype in ("bfloat16", "float16"):
            entry = report["precision"][name][dtype]
            assert abs(entry["fused"] - entry["dense"]) < 1e-2, (name, dtype, entry)
    assert report["precision"]["shaw"]["bfloat16"]["fused"].startswith("not eligible")
    assert report["train"]["nope"]["vs_nope"] == 1.0 and report["train"]["alibi"]["ms"] > 0
    assert report["rope"]["float32"]["rope_GBps"] > 0
    assert report["long"]["128"]["alibi"]["blockwise"]["temp_MB"] > 0
    assert report["job"]["exit_code"] == 0 and report["job"]["seconds"] > 0
