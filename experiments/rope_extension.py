"""RoPE context extension, in miniature: PI, NTK-aware, dynamic NTK and YaRN at zero
shot, then after a short fine-tune at 4x the training length.

In the docs: docs/reproductions/rope_extension.md.
From the repository root:

    python experiments/rope_extension.py    # configs/rope_extension.yaml as published
    python experiments/rope_extension.py train.steps=100 seeds=[0]    # overrides, as --set
"""

import sys
from pathlib import Path

from posenc_jax.harness import load_config, markdown_table, run

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "rope_extension.yaml"

if __name__ == "__main__":
    records = run(load_config(CONFIG, sys.argv[1:]))
    print(markdown_table(records))
