"""CoPE's synthetic tasks in miniature (Golovneva et al. 2024): counting, selective copy
and flip-flop, with CoPE beside learned absolute positions, RoPE and NoPE, tested up to
4x beyond the training length.

In the docs: docs/reproductions/cope_tasks.md.
From the repository root:

    python experiments/cope_tasks.py    # configs/cope_tasks.yaml as published
    python experiments/cope_tasks.py train.steps=100    # overrides, as --set
"""

import sys
from pathlib import Path

from posenc_jax.harness import load_config, markdown_table, run

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cope_tasks.yaml"

if __name__ == "__main__":
    records = run(load_config(CONFIG, sys.argv[1:]))
    print(markdown_table(records))
