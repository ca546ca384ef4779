"""Run in a subprocess (maybe with 8 simulated CPU devices) by tests/test_sharding.py.

python -m tests.helpers.sharding_worker run CONFIG OUT_DIR
python -m tests.helpers.sharding_worker train CKPT_DIR OUT_NPZ
"""

import sys

import jax
import numpy as np


def _train(ckpt_dir: str, out_npz: str) -> None:
    from posenc_jax.harness.checkpoint import RunCheckpointer
    from posenc_jax.harness.config import EvalConfig, ModelConfig, TrainConfig
    from posenc_jax.harness.sharding import choose_mesh_shape, make_mesh
    from posenc_jax.harness.tasks import get_task
    from posenc_jax.harness.train import train
    from posenc_jax.schemes import make_scheme

    seeds = [0, 1, 2, 3]
    tcfg = TrainConfig(
        length=4, steps=10, batch_size=4, warmup_steps=2, checkpoint_every=5, log_every=5
    )
    mesh = make_mesh(choose_mesh_shape(jax.device_count(), len(seeds), (4,)))
    task = get_task("copy", num_symbols=5)
    scheme = make_scheme("alibi").configure(causal=True)
    _, state, info = train(
        task,
        scheme,
        seeds,
        ModelConfig(num_layers=1, d_model=16, num_heads=2),
        tcfg,
        EvalConfig(),
        checkpointer=RunCheckpointer(ckpt_dir),
        mesh=mesh,
        progress=False,
    )
    leaves = jax.tree.leaves(jax.device_get(state.params))
    np.savez(
        out_npz,
        *leaves,
        resumed_from=-1 if info["resumed_from"] is None else info["resumed_from"],
        devices=jax.device_count(),
        shards=len(jax.tree.leaves(state.params)[0].sharding.device_set),
    )


def main() -> None:
    mode = sys.argv[1]
    if mode == "run":
        from posenc_jax.harness.runner import run

        run(sys.argv[2], out_dir=sys.argv[3], progress=False, verbose=False)
    elif mode == "train":
        _train(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
