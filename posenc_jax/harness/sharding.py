"""Seed- and data-parallel placement on a device mesh (jax.sharding), one host or many.

The stacked per-seed state ([S, ...] leaves) is sharded along the mesh axis
"seed"; training batches [S, B, L] along ("seed", "data"); evaluation batches
[B, L] along "data". XLA partitions the vmapped, jitted step accordingly, so the
same program runs on 1 CPU, 8 TPU cores or several hosts.

Multi-host: `maybe_initialize_distributed` starts JAX's distributed runtime when
the environment describes several processes; every process generates the same
global batch (generation is deterministic and cheap) and hands JAX only the
shards it owns (`jax.make_array_from_callback`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "MESH_AXES",
    "choose_mesh_shape",
    "make_mesh",
    "maybe_initialize_distributed",
    "put_batch",
    "put_state",
]

MESH_AXES = ("seed", "data")


def choose_mesh_shape(
    num_devices: int,
    num_seeds: int,
    batch_sizes: tuple[int, ...],
    *,
    seed: int | None = None,
    data: int | None = None,
) -> tuple[int, int]:
    """The (seed, data) mesh shape: explicit sizes are checked, missing ones chosen.

    Automatic choice: as many devices as possible on the seed axis (seeds never
    communicate), the rest on the data axis, each size dividing what it shards.

    Raises:
      ValueError: a size does not divide the seeds or batch sizes, or needs more
        devices than there are.
    """
    if seed is None:
        seed = math.gcd(num_devices, num_seeds)
    if seed < 1 or num_seeds % seed:
        raise ValueError(f"mesh.seed ({seed}) must divide the number of seeds ({num_seeds})")
    if data is None:
        data = num_devices // seed
        for b in batch_sizes:
            data = math.gcd(data, b)
    if data < 1 or any(b % data for b in batch_sizes):
        raise ValueError(f"mesh.data ({data}) must divide every batch size {list(batch_sizes)}")
    if seed * data > num_devices:
        raise ValueError(
            f"mesh seed x data = {seed} x {data} needs {seed * data} devices; "
            f"{num_devices} are available"
        )
    return seed, data


def make_mesh(shape: tuple[int, int], devices: list | None = None) -> Mesh:
    """A ("seed", "data") mesh over the first seed*data devices."""
    devices = list(jax.devices() if devices is None else devices)
    n = shape[0] * shape[1]
    return Mesh(np.asarray(devices[:n], dtype=object).reshape(shape), MESH_AXES)


def put_state(tree: Any, mesh: Mesh) -> Any:
    """Places every [S, ...] leaf with its seed axis sharded over "seed"."""
    sharding = NamedSharding(mesh, P("seed"))
    return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)


def put_batch(batch: Mapping[str, np.ndarray], mesh: Mesh, *, stacked: bool) -> dict:
    """Global numpy batch -> sharded jax arrays; each process supplies only its shards.

    stacked=True: [S, B, ...] over ("seed", "data"); False: [B, ...] over "data".
    """
    spec = P("seed", "data") if stacked else P("data")
    sharding = NamedSharding(mesh, spec)
    return {
        k: jax.make_array_from_callback(v.shape, sharding, lambda idx, v=v: v[idx])
        for k, v in batch.items()
    }


def maybe_initialize_distributed() -> bool:
    """Starts jax.distributed when the environment describes a multi-process job.

    Recognised: an explicit coordinator (JAX_COORDINATOR_ADDRESS with
    JAX_NUM_PROCESSES and JAX_PROCESS_ID), a Slurm job with several tasks, or a
    Cloud TPU pod slice (TPU_WORKER_HOSTNAMES lists several hosts). Returns True
    when it initialised the runtime.
    """
    env = os.environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(
            coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(env.get("JAX_NUM_PROCESSES", "1")),
            process_id=int(env.get("JAX_PROCESS_ID", "0")),
        )
        return True
    slurm_tasks = int(env.get("SLURM_NTASKS", "1") or 1)
    tpu_hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]
    if slurm_tasks > 1 or len(tpu_hosts) > 1:
        jax.distributed.initialize()  # auto-detects Slurm and TPU pod settings
        return True
    return False
