"""Marks the device-independent test files, which `benchmarks/accelerator.py` runs on a GPU or TPU.

Their tests compare the library with float64 references and with itself across attention
paths, on whatever device JAX picks; they neither train models nor start processes.
"""

import os

import pytest

# The suite's shapes are tiny, so its time goes to compiling, not running: ask for
# LLVM's level-1 optimisation without its expensive passes (the harness's end-to-end
# tests compile in three quarters of the time). Set before any test module imports JAX;
# a caller's own level is kept. Not level 0: XLA:CPU 0.10 computes a NaN gradient there
# that optimised code does not (KERPLE under blockwise attention; eager runs and levels
# 1 to 3 agree and are finite).
_FAST_COMPILE = "--xla_backend_optimization_level=1 --xla_llvm_disable_expensive_passes=true"
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_backend_optimization_level" not in _flags:
    os.environ["XLA_FLAGS"] = f"{_flags} {_FAST_COMPILE}".strip()

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
