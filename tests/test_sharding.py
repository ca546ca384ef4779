"""Several devices: sharded training equals single-device training; checkpoints move across
device counts. Uses 8 simulated CPU devices in subprocesses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from posenc_jax.harness.results import read_records
from posenc_jax.harness.sharding import choose_mesh_shape

ROOT = Path(__file__).resolve().parents[1]

CFG = {
    "name": "sharded",
    "schemes": ["alibi"],
    "tasks": [{"name": "copy", "num_symbols": 5}],
    "seeds": [0, 1, 2, 3],
    "model": {"num_layers": 1, "d_model": 16, "num_heads": 2},
    "train": {"length": 4, "steps": 8, "batch_size": 4, "warmup_steps": 2},
    "eval": {"lengths": [4, 8], "batch_size": 8},
}


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory) -> Path:
    """One persistent compilation cache for this file's workers: a program compiled for
    some device count once is loaded, not compiled, by the later workers."""
    return tmp_path_factory.mktemp("xla-cache")


def _worker(*args, devices: int, cache: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }
    flags = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
    env["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count={devices}").strip()
    subprocess.run(
        [sys.executable, "-m", "tests.helpers.sharding_worker", *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )


def test_mesh_shape_choice_and_errors():
    assert choose_mesh_shape(8, 4, (4, 8)) == (4, 2)
    assert choose_mesh_shape(8, 3, (64,)) == (1, 8)
    assert choose_mesh_shape(1, 3, (5,)) == (1, 1)
    assert choose_mesh_shape(8, 2, (4,), seed=2, data=4) == (2, 4)
    with pytest.raises(ValueError, match=r"mesh\.seed"):
        choose_mesh_shape(8, 3, (4,), seed=2)
    with pytest.raises(ValueError, match=r"mesh\.data"):
        choose_mesh_shape(8, 2, (6,), data=4)
    with pytest.raises(ValueError, match="devices"):
        choose_mesh_shape(2, 4, (4,), seed=4)


def test_sharded_run_on_8_devices_equals_single_device(tmp_path, compile_cache):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    _worker("run", str(cfg), str(tmp_path / "eight"), devices=8, cache=compile_cache)
    _worker("run", str(cfg), str(tmp_path / "one"), devices=1, cache=compile_cache)
    env8 = json.loads((tmp_path / "eight" / "environment.json").read_text())
    assert env8["device_count"] == 8 and env8["mesh"] == {"seed": 4, "data": 2}
    many = read_records(tmp_path / "eight" / "results.jsonl")
    one = read_records(tmp_path / "one" / "results.jsonl")
    assert len(many) == len(one) == 4 * 2
    for a, b in zip(many, one, strict=True):
        assert (a["seed"], a["eval_length"]) == (b["seed"], b["eval_length"])
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5)
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-6)


@pytest.mark.parametrize(("first", "second"), [(8, 1), (1, 8)])
def test_checkpoint_moves_between_device_counts(tmp_path, compile_cache, first, second):
    ckpt = tmp_path / "ckpt"
    _worker("train", str(ckpt), str(tmp_path / "a.npz"), devices=first, cache=compile_cache)
    # The first run left its step-5 checkpoint; the second resumes from it on other devices.
    _worker("train", str(ckpt), str(tmp_path / "b.npz"), devices=second, cache=compile_cache)
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert int(a["resumed_from"]) == -1 and int(b["resumed_from"]) == 5
    assert int(a["devices"]) == first and int(b["devices"]) == second
    assert int(b["shards"]) == second  # the restored state lives on every device of the mesh
    leaves = [k for k in a.files if k.startswith("arr_")]
    assert leaves
    for k in leaves:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5)
