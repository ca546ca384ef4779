"""Marks the device-independent test files, which `benchmarks/accelerator.py` runs on a GPU or TPU.

Their tests compare the library with float64 references and with itself across attention
paths, on whatever device JAX picks; they neither train models nor start processes.
"""

import os
import shutil
import tempfile

import pytest

# The suite's shapes are tiny, so its time goes to compiling, not running: ask for
# LLVM's level-1 optimisation without its expensive passes (the harness's end-to-end
# tests compile in three quarters of the time), and XLA:CPU's classic elemental fusion
# code instead of its MLIR fusion emitters (blockwise-against-dense and KV-cache tests
# of 11 schemes: 32 s and 34 s against 50 s and 50 s). Set before any test module
# imports JAX; a caller's own level is kept. Not level 0: XLA:CPU 0.10 computes a NaN
# gradient there that optimised code does not (KERPLE under blockwise attention; eager
# runs and levels 1 to 3 agree and are finite).
_FAST_COMPILE = (
    "--xla_backend_optimization_level=1 --xla_llvm_disable_expensive_passes=true"
    " --xla_cpu_use_fusion_emitters=false"
)
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_backend_optimization_level" not in _flags:
    os.environ["XLA_FLAGS"] = f"{_flags} {_FAST_COMPILE}".strip()

# One compilation cache for the whole run: the workers and the processes the tests start
# (experiment runs, the CLI, the sharding worker) compile many of the same programs (the
# shared scheme models, the tiny train steps, each eager operation), and a program one of
# them compiled is then read from disk by the others. Made by the first process (the
# controller, before it starts the workers, which inherit it) and removed when that process
# ends; a cache the caller names is used instead and kept. Tests that study the cache set
# their own folder.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="posenc-jax-test-compile-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

DEVICE_INDEPENDENT = frozenset(
    {
        "test_absolute.py",
        "test_alibi.py",
        "test_attention.py",
        "test_fire.py",
        "test_kerple.py",
        "test_packing.py",
        "test_relative.py",
        "test_rope.py",
        "test_rope_decay.py",
        "test_rope_scaling.py",
        "test_xpos.py",
    }
)


def pytest_collection_modifyitems(config, items):
    del config
    for item in items:
        if item.path.name in DEVICE_INDEPENDENT:
            item.add_marker(pytest.mark.accelerator)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None and not hasattr(config, "workerinput"):
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
