"""Run checkpoints with orbax: saved atomically, restored exactly, removed when a run ends.

A checkpoint holds the step and the seed-stacked params, non-param state and
optimizer state of one run. Orbax writes into a temporary folder and renames it,
so a process killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

__all__ = ["RunCheckpointer", "run_dir_name"]


def run_dir_name(scheme_label: str, task_label: str) -> str:
    """A folder name for a (scheme, task) run."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", f"{scheme_label}__{task_label}")


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_saveable(tree: Any) -> Any:
    """Typed PRNG keys -> their raw uint32 data (orbax stores plain arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _from_saveable(tree: Any, template: Any) -> Any:
    return jax.tree.map(
        lambda x, t: jax.random.wrap_key_data(x, impl=jax.random.key_impl(t)) if _is_key(t) else x,
        tree,
        template,
    )


class RunCheckpointer:
    """Saves and restores the state of one run under ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).absolute()
        self._manager: ocp.CheckpointManager | None = None

    @property
    def manager(self) -> ocp.CheckpointManager:
        if self._manager is None:
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=1, enable_async_checkpointing=False, create=True
                ),
            )
        return self._manager

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        if not self.directory.exists():
            return None
        return self.manager.latest_step()

    def save(self, step: int, state: dict[str, Any]) -> None:
        """Saves ``state`` (a pytree of arrays) at ``step``; replaces the older one."""
        self.manager.save(step, args=ocp.args.StandardSave(_to_saveable(state)))
        self.manager.wait_until_finished()

    def restore(self, template: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """Restores the newest checkpoint into the structure of ``template``."""
        step = self.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saveable(template))
        restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        return step, _from_saveable(restored, template)

    def remove(self) -> None:
        """Deletes every checkpoint of this run (after its results are saved)."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None
        shutil.rmtree(self.directory, ignore_errors=True)
