"""The benchmark scripts keep working where their extras are missing: the accelerator check's
dry run on the CPU, the peer comparison's with and without torch and x-transformers."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


PEER_INSTALLED = all(importlib.util.find_spec(m) for m in ("torch", "x_transformers"))
INSTALL_LINE = 'install the bench extra: pip install -e ".[bench]"'


def _peers(*args, hide_peer=False):
    """benchmarks/peers.py in a subprocess; ``hide_peer``: as if x-transformers were missing."""
    argv = ["benchmarks/peers.py", *args]
    code = "import runpy, sys\n"
    if hide_peer:
        code += "sys.modules['x_transformers'] = None\n"  # find_spec then returns None
    code += f"sys.argv = {argv!r}\nrunpy.run_path(sys.argv[0], run_name='__main__')\n"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_peers_dry_run_times_both_sides_or_says_how_to_install(tmp_path):
    out = tmp_path / "peers.json"
    res = _peers("--dry-run", "--json", str(out))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    if not PEER_INSTALLED:
        assert INSTALL_LINE in res.stdout and not out.exists()
        return
    (row,) = json.loads(out.read_text())["rows"]
    assert row["scheme"] == "rope" and row["ours_ms"] > 0 and row["peer_ms"] > 0
    assert row["ratio"] == row["ours_ms"] / row["peer_ms"]
    q1, q3 = row["paired_quartiles"]
    assert 0 < q1 <= row["paired_ratio"] <= q3
    assert 0 < row["ours_loss"] < 10 and 0 < row["peer_loss"] < 10
    # The same model on both sides, but for the biases the docstring lists: LayerNorm's
    # (2 per layer, one final) and the output head's.
    s = row["spec"]
    extra = (2 * s["layers"] + 1) * s["d_model"] + s["vocab"]
    assert row["ours_params"] - row["peer_params"] == extra


def test_peers_without_the_peer_says_how_to_install_and_exits_0():
    res = _peers("--dry-run", hide_peer=True)
    assert res.returncode == 0, res.stderr[-3000:]
    (line,) = res.stdout.splitlines()  # one line, whatever else is missing (torch too)
    assert line.startswith("peers: skipped, the peer is not installed (")
    assert "x_transformers" in line and line.endswith(INSTALL_LINE)


def _peers_module():
    path = ROOT / "benchmarks" / "peers.py"
    spec = importlib.util.spec_from_file_location("posenc_benchmarks_peers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)  # defines functions only; torch is imported in main()
    return module


def test_paired_ratios_and_quartiles_by_hand():
    peers = _peers_module()
    # Pairs 2-4 ran in a slow stretch that slowed both sides 1.5x: their ratios are
    # unchanged, 0.8 throughout but for pair 5 (ours 1.2x the peer).
    ours = [8.0, 12.0, 12.0, 12.0, 12.0]
    peer = [10.0, 15.0, 15.0, 15.0, 10.0]
    assert [round(r, 9) for r in peers.paired_ratios(ours, peer)] == [0.8, 0.8, 0.8, 0.8, 1.2]
    assert peers.quartiles([0.5, 0.6, 0.7, 0.8, 0.9]) == [0.6, 0.8]
    assert peers.quartiles([0.7]) == [0.7, 0.7]
    with pytest.raises(ValueError, match="1 samples of ours, 2 of the peer"):
        peers.paired_ratios([1.0], [1.0, 2.0])
