"""Long addition with reversed digits, in miniature: Abacus embeddings (McLeish et al.
2024) and FIRE with randomized positions and index hints (Zhou et al. 2024) beside NoPE,
trained on numbers of 1..8 digits and tested up to 32.

In the docs: docs/reproductions/arithmetic.md.
From the repository root:

    python experiments/arithmetic.py    # configs/arithmetic.yaml as published
    python experiments/arithmetic.py train.steps=100    # overrides, as --set
"""

import sys
from pathlib import Path

from posenc_jax.harness import load_config, markdown_table, run

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "arithmetic.yaml"

if __name__ == "__main__":
    records = run(load_config(CONFIG, sys.argv[1:]))
    print(markdown_table(records))
