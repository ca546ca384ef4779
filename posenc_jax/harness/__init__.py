"""The experiment harness: configs, training, evaluation, results, figures, the CLI.

Train short, test long, from a YAML config or a dict::

    from posenc_jax.harness import load_config, markdown_table, run

    records = run(load_config("configs/quick.yaml", ["train.steps=100"]))
    print(markdown_table(records))

It sits on top of the library: `posenc_jax` and `posenc_jax.nn` never import it.
The names below load on first use, so ``posenc list`` and ``import posenc_jax.harness``
stay quick (training pulls in Flax, optax and orbax).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from posenc_jax.harness.config import (
        ConfigError,
        ExperimentConfig,
        config_from_dict,
        config_to_dict,
        load_config,
    )
    from posenc_jax.harness.results import markdown_table, read_records, summarize
    from posenc_jax.harness.runner import run, write_reports
    from posenc_jax.harness.runtime import keep_freed_memory

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "config_from_dict",
    "config_to_dict",
    "keep_freed_memory",
    "load_config",
    "markdown_table",
    "read_records",
    "run",
    "summarize",
    "write_reports",
]

_HOME = {
    "ConfigError": "config",
    "ExperimentConfig": "config",
    "config_from_dict": "config",
    "config_to_dict": "config",
    "load_config": "config",
    "markdown_table": "results",
    "read_records": "results",
    "summarize": "results",
    "run": "runner",
    "write_reports": "runner",
    "keep_freed_memory": "runtime",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'posenc_jax.harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"posenc_jax.harness.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
