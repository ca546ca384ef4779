"""The schemes of 2024-2025 in the ALiBi paper's setting, in miniature: byte-level
language-model perplexity at up to 16x the training length for FoX, stick-breaking
attention, PoPE and CoPE beside RoPE, ALiBi and NoPE.

In the docs: docs/reproductions/recent_schemes_lm.md.
From the repository root:

    python experiments/recent_schemes_lm.py    # configs/recent_schemes_lm.yaml as published
    python experiments/recent_schemes_lm.py train.steps=100    # overrides, as --set
"""

import sys
from pathlib import Path

from posenc_jax.harness import load_config, markdown_table, run

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "recent_schemes_lm.yaml"

if __name__ == "__main__":
    records = run(load_config(CONFIG, sys.argv[1:]))
    print(markdown_table(records))
