"""Marks the device-independent test files, which `benchmarks/accelerator.py` runs on a GPU or TPU.

Their tests compare the library with float64 references and with itself across attention
paths, on whatever device JAX picks; they neither train models nor start processes.
"""

import pytest

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
