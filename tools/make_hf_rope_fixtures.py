"""Writes tests/data/hf_rope_golden.json from Hugging Face transformers' RoPE init functions.

Run once, in a separate environment that has transformers and torch (the
project itself never imports them):

    python -m venv /tmp/hfref
    /tmp/hfref/bin/pip install transformers torch
    /tmp/hfref/bin/python tools/make_hf_rope_fixtures.py

Each case is a small ``config.json``-style dict. The script builds the model's
config class from it, calls ``ROPE_INIT_FUNCTIONS[rope_type]`` (or the model's
``compute_default_rope_parameters`` for the default type) at each listed
``seq_len`` and stores the config, the inverse frequencies and the attention
factor, with the transformers and torch versions. The tests read the JSON
through `posenc_jax.rope.rope_from_hf_config`.
"""

from __future__ import annotations

import copy
import json
import pathlib
import sys

import torch
import transformers
from transformers import DeepseekV3Config, GPTNeoXConfig, LlamaConfig, Phi3Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "hf_rope_golden.json"

# Phi-3-mini-128k-instruct, first release (rope_scaling type "su", later renamed "longrope").
PHI3_MINI_128K_LONG = [
    1.0299999713897705, 1.0499999523162842, 1.0499999523162842, 1.0799999237060547,
    1.2299998998641968, 1.2299998998641968, 1.2999999523162842, 1.4499999284744263,
    1.5999999046325684, 1.6499998569488525, 1.8999998569488525, 2.859999895095825,
    3.68999981880188, 5.419999599456787, 5.489999771118164, 5.489999771118164,
    9.09000015258789, 11.579999923706055, 15.65999984741211, 15.769999504089355,
    15.789999961853027, 18.360000610351562, 21.989999771118164, 23.079999923706055,
    30.009998321533203, 32.35000228881836, 32.590003967285156, 35.56000518798828,
    39.95000457763672, 53.840003967285156, 56.20000457763672, 57.95000457763672,
    59.29000473022461, 59.77000427246094, 59.920005798339844, 61.190006256103516,
    61.96000671386719, 62.50000762939453, 63.3700065612793, 63.48000717163086,
    63.48000717163086, 63.66000747680664, 63.850006103515625, 64.08000946044922,
    64.760009765625, 64.80001068115234, 64.81001281738281, 64.81001281738281,
]  # fmt: skip
PHI3_MINI_128K_SHORT = (
    [1.05] * 3 + [1.1] * 3 + [1.2500000000000002] * 2
    + [1.4000000000000004, 1.4500000000000004, 1.5500000000000005, 1.8500000000000008,
       1.9000000000000008]
    + [2.000000000000001] * 19
    + [2.1000000000000005, 2.1000000000000005, 2.2]
    + [2.3499999999999996] * 4 + [2.3999999999999995] * 2
    + [2.6499999999999986, 2.6999999999999984, 2.8999999999999977, 2.9499999999999975]
    + [3.049999999999997] * 3
)  # fmt: skip

LLAMA_8B = {"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8}

# (name, config class, config.json dict, seq_lens)
CASES = [
    (
        "default_llama2",
        LlamaConfig,
        {**LLAMA_8B, "model_type": "llama", "rope_theta": 10000.0, "max_position_embeddings": 4096},
        [None],
    ),
    (
        "default_neox_partial",
        GPTNeoXConfig,
        {
            "model_type": "gpt_neox",
            "hidden_size": 768,
            "num_attention_heads": 12,
            "rotary_pct": 0.25,
            "rotary_emb_base": 10000,
            "max_position_embeddings": 2048,
        },
        [None],
    ),
    (
        "default_head96_base1e6",
        LlamaConfig,
        {
            "model_type": "llama",
            "hidden_size": 1536,
            "num_attention_heads": 16,
            "rope_theta": 1000000.0,
            "max_position_embeddings": 32768,
        },
        [None],
    ),
    (
        "linear_factor4",
        LlamaConfig,
        {
            **LLAMA_8B,
            "model_type": "llama",
            "rope_theta": 10000.0,
            "max_position_embeddings": 16384,
            "rope_scaling": {"type": "linear", "factor": 4.0},
        },
        [None],
    ),
    (
        "dynamic_factor2",
        LlamaConfig,
        {
            "model_type": "llama",
            "hidden_size": 2048,
            "num_attention_heads": 32,
            "rope_theta": 10000.0,
            "max_position_embeddings": 2048,
            "rope_scaling": {"rope_type": "dynamic", "factor": 2.0},
        },
        [None, 1000, 2048, 2049, 4096, 10000, 100000],
    ),
    (
        "dynamic_factor4_head128",
        LlamaConfig,
        {
            **LLAMA_8B,
            "model_type": "llama",
            "rope_theta": 500000.0,
            "max_position_embeddings": 8192,
            "rope_scaling": {"type": "dynamic", "factor": 4.0},
        },
        [None, 8000, 8193, 32768],
    ),
    (
        "yarn_qwen25",
        LlamaConfig,
        {
            **LLAMA_8B,
            "model_type": "llama",
            "rope_theta": 1000000.0,
            "max_position_embeddings": 131072,
            "rope_scaling": {
                "type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 32768,
            },
        },
        [None],
    ),
    (
        "yarn_no_truncate",
        LlamaConfig,
        {
            "model_type": "llama",
            "hidden_size": 2880,
            "num_attention_heads": 64,
            "head_dim": 64,
            "rope_theta": 150000.0,
            "max_position_embeddings": 131072,
            "rope_scaling": {
                "rope_type": "yarn",
                "factor": 32.0,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "truncate": False,
                "original_max_position_embeddings": 4096,
            },
        },
        [None],
    ),
    (
        "yarn_attention_factor",
        LlamaConfig,
        {
            "model_type": "llama",
            "hidden_size": 1536,
            "num_attention_heads": 16,
            "rope_theta": 10000.0,
            "max_position_embeddings": 16384,
            "rope_scaling": {
                "rope_type": "yarn",
                "factor": 8.0,
                "attention_factor": 0.875,
                "beta_fast": 16.0,
                "beta_slow": 2.0,
                "original_max_position_embeddings": 2048,
            },
        },
        [None],
    ),
    (
        "yarn_deepseek_v3",
        DeepseekV3Config,
        {
            "model_type": "deepseek_v3",
            "hidden_size": 7168,
            "num_attention_heads": 128,
            "num_key_value_heads": 128,
            "qk_rope_head_dim": 64,
            "qk_nope_head_dim": 128,
            "v_head_dim": 128,
            "kv_lora_rank": 512,
            "q_lora_rank": 1536,
            "rope_theta": 10000,
            "max_position_embeddings": 163840,
            "rope_scaling": {
                "beta_fast": 32,
                "beta_slow": 1,
                "factor": 40,
                "mscale": 1.0,
                "mscale_all_dim": 1.0,
                "original_max_position_embeddings": 4096,
                "type": "yarn",
            },
        },
        [None],
    ),
    (
        "yarn_mscale_ratio",
        LlamaConfig,
        {
            "model_type": "llama",
            "hidden_size": 1024,
            "num_attention_heads": 16,
            "rope_theta": 10000.0,
            "max_position_embeddings": 163840,
            "rope_scaling": {
                "rope_type": "yarn",
                "factor": 40.0,
                "mscale": 1.0,
                "mscale_all_dim": 0.707,
                "original_max_position_embeddings": 4096,
            },
        },
        [None],
    ),
    (
        "yarn_partial_rotary",
        LlamaConfig,
        {
            **LLAMA_8B,
            "model_type": "llama",
            "rope_theta": 10000.0,
            "max_position_embeddings": 16384,
            "partial_rotary_factor": 0.5,
            "rope_scaling": {
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 4096,
            },
        },
        [None],
    ),
    (
        "llama3_llama31_8b",
        LlamaConfig,
        {
            **LLAMA_8B,
            "model_type": "llama",
            "rope_theta": 500000.0,
            "max_position_embeddings": 131072,
            "rope_scaling": {
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
                "rope_type": "llama3",
            },
        },
        [None],
    ),
    (
        "llama3_llama32_3b",
        LlamaConfig,
        {
            "model_type": "llama",
            "hidden_size": 3072,
            "num_attention_heads": 24,
            "rope_theta": 500000.0,
            "max_position_embeddings": 131072,
            "rope_scaling": {
                "factor": 32.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
                "rope_type": "llama3",
            },
        },
        [None],
    ),
    (
        "longrope_phi3_mini_128k",
        Phi3Config,
        {
            "model_type": "phi3",
            "hidden_size": 3072,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "rope_theta": 10000.0,
            "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096,
            "rope_scaling": {
                "long_factor": PHI3_MINI_128K_LONG,
                "short_factor": PHI3_MINI_128K_SHORT,
                "type": "longrope",
            },
        },
        [None, 100, 4096, 4097, 131072],
    ),
    (
        "longrope_explicit_factors",
        LlamaConfig,
        {
            "model_type": "llama",
            "hidden_size": 1024,
            "num_attention_heads": 16,
            "rope_theta": 10000.0,
            "max_position_embeddings": 32768,
            "rope_scaling": {
                "rope_type": "longrope",
                "factor": 8.0,
                "attention_factor": 1.25,
                "original_max_position_embeddings": 4096,
                "short_factor": [1.0 + 0.02 * i for i in range(32)],
                "long_factor": [1.0 + 0.5 * i for i in range(32)],
            },
        },
        [None, 4096, 5000],
    ),
]


def hf_frequencies(config_cls, config_dict, seq_len):
    config = config_cls(**copy.deepcopy(config_dict))
    rope_type = config.rope_parameters["rope_type"]
    if rope_type == "default":
        if config_cls is GPTNeoXConfig:
            fn = GPTNeoXRotaryEmbedding.compute_default_rope_parameters
        else:
            fn = LlamaRotaryEmbedding.compute_default_rope_parameters
        inv_freq, attention_factor = fn(config)
    else:
        inv_freq, attention_factor = ROPE_INIT_FUNCTIONS[rope_type](config, "cpu", seq_len=seq_len)
    assert inv_freq.dtype == torch.float32, inv_freq.dtype
    return rope_type, inv_freq, float(attention_factor)


def main() -> int:
    cases = []
    for name, config_cls, config_dict, seq_lens in CASES:
        for seq_len in seq_lens:
            rope_type, inv_freq, attention_factor = hf_frequencies(config_cls, config_dict, seq_len)
            cases.append(
                {
                    "name": name if seq_len is None else f"{name}@{seq_len}",
                    "config_class": config_cls.__name__,
                    "rope_type": rope_type,
                    "config": config_dict,
                    "seq_len": seq_len,
                    "inv_freq": [float(v) for v in inv_freq.tolist()],
                    "attention_factor": attention_factor,
                }
            )
    payload = {
        "description": (
            "Inverse frequencies and attention factors from Hugging Face transformers' "
            "RoPE init functions (modeling_rope_utils.ROPE_INIT_FUNCTIONS; default type: "
            "the model's compute_default_rope_parameters), generated by "
            "tools/make_hf_rope_fixtures.py."
        ),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
