"""Kazemnejad et al. 2023, in miniature: decoder-only models on copy, reverse, summation
and parity, each on the paper's split (copy and reverse trained at 1..20 and tested at
21..40, summation and parity at 1..8 then 9..16).

In the docs: docs/reproductions/kazemnejad.md.
From the repository root:

    python experiments/kazemnejad.py    # configs/kazemnejad.yaml as published
    python experiments/kazemnejad.py train.steps=100 seeds=[0]    # overrides, as --set
"""

import sys
from pathlib import Path

from posenc_jax.harness import load_config, markdown_table, run

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "kazemnejad.yaml"

if __name__ == "__main__":
    records = run(load_config(CONFIG, sys.argv[1:]))
    print(markdown_table(records))
