"""Ruoss et al. 2023 / Deletang et al. 2023, in miniature: encoders on three tasks of
the algorithmic suite, with and without randomized positions
(configs/chomsky_full.yaml is the full protocol).

In the docs: docs/reproductions/chomsky.md.
From the repository root:

    python experiments/chomsky.py    # configs/chomsky.yaml as published
    python experiments/chomsky.py train.steps=100 seeds=[0]    # overrides, as --set
"""

import sys
from pathlib import Path

from posenc_jax.harness import load_config, markdown_table, run

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "chomsky.yaml"

if __name__ == "__main__":
    records = run(load_config(CONFIG, sys.argv[1:]))
    print(markdown_table(records))
