"""Press et al. 2022 (ALiBi), in miniature: byte-level language-model perplexity
at up to 16x the training length, for sinusoidal, RoPE, T5, ALiBi and NoPE.

In the docs: docs/reproductions/alibi_lm.md.
From the repository root:

    python experiments/alibi_lm.py    # configs/alibi_lm.yaml as published
    python experiments/alibi_lm.py train.steps=100 seeds=[0]    # overrides, as --set
"""

import sys
from pathlib import Path

from posenc_jax.harness import load_config, markdown_table, run

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "alibi_lm.yaml"

if __name__ == "__main__":
    records = run(load_config(CONFIG, sys.argv[1:]))
    print(markdown_table(records))
