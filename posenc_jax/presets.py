"""Positional settings of well-known model families, as scheme-registry configs.

Each `Preset` names a model family and gives its positional encoding as a config
dict for `posenc_jax.schemes.make_scheme` (``{"name": "rope", "base": ...}``),
with the model's context length and the source of the numbers. RoPE presets
also give their `posenc_jax.rope.RopeSettings` (head dim included), so their
frequencies can be computed directly.

Example:
    >>> get_preset("llama-3.1").scheme["scaling"]["rope_type"]
    'llama3'
    >>> "bert" in list_presets()
    True

References: model papers and Hugging Face ``config.json`` files, cited per preset.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any

from posenc_jax.rope import RopeSettings

__all__ = [
    "PRESETS",
    "Preset",
    "get_preset",
    "list_presets",
    "preset_rope_settings",
    "presets_table_markdown",
]


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Preset:
    """A model family's positional encoding.

    Attributes:
      name: preset key, e.g. "llama-3.1".
      description: the model(s) covered and notes (versions, approximations).
      source: where the numbers come from (paper, config file).
      scheme: read-only scheme-registry config, e.g. ``{"name": "alibi"}``; for a
        RoPE preset it is derived from ``rope`` (`RopeSettings.to_scheme_config`,
        the one place that writes a RoPE scheme config).
      max_position_embeddings: the model's context length (learned tables: rows);
        for a RoPE preset, ``rope.max_position_embeddings``.
      rope: the `RopeSettings` of a RoPE preset (head dim included), else None.

    Example:
        >>> get_preset("gpt2").scheme_config()
        {'name': 'learned', 'max_length': 1024}

    References: see each preset's ``source``.
    """

    name: str
    description: str
    source: str
    scheme: Mapping[str, Any] | None = dataclasses.field(default=None, hash=False)
    max_position_embeddings: int | None = None
    rope: RopeSettings | None = None

    def __post_init__(self) -> None:
        if (self.scheme is None) == (self.rope is None):
            raise ValueError(f"preset {self.name!r}: give exactly one of scheme and rope")
        if self.rope is not None:
            object.__setattr__(self, "scheme", self.rope.to_scheme_config())
            object.__setattr__(self, "max_position_embeddings", self.rope.max_position_embeddings)
        object.__setattr__(self, "scheme", _freeze(self.scheme))

    @property
    def encoding(self) -> str:
        """The scheme name ("rope", "alibi", ...)."""
        return str(self.scheme["name"])

    @property
    def head_dim(self) -> int | None:
        """The head dim the rotary settings refer to (RoPE presets), else None."""
        return None if self.rope is None else self.rope.head_dim

    def scheme_config(self) -> dict[str, Any]:
        """A plain, JSON-ready copy of ``scheme`` (lists, dicts)."""
        return _thaw(self.scheme)

    def rope_settings(self) -> RopeSettings:
        """The `RopeSettings` of a RoPE preset; ValueError for other encodings."""
        if self.rope is None:
            raise ValueError(
                f"preset {self.name!r} uses {self.encoding!r}, not rope; rope presets: "
                f"{[n for n, p in PRESETS.items() if p.rope is not None]}"
            )
        return self.rope


# Phi-3-mini-128k-instruct, first release (rope_scaling type "su", renamed "longrope" later;
# the same tables ship with Phi-3-vision-128k-instruct). R/2 = 48 entries each.
_PHI3_MINI_128K_LONG = (
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
)  # fmt: skip
_PHI3_MINI_128K_SHORT = (
    (1.05,) * 3 + (1.1,) * 3 + (1.2500000000000002,) * 2
    + (1.4000000000000004, 1.4500000000000004, 1.5500000000000005, 1.8500000000000008,
       1.9000000000000008)
    + (2.000000000000001,) * 19
    + (2.1000000000000005, 2.1000000000000005, 2.2)
    + (2.3499999999999996,) * 4 + (2.3999999999999995,) * 2
    + (2.6499999999999986, 2.6999999999999984, 2.8999999999999977, 2.9499999999999975)
    + (3.049999999999997,) * 3
)  # fmt: skip


_PRESET_LIST = (
    Preset(
        name="bert",
        description="BERT (base/large): learned absolute embeddings added to the input.",
        scheme={"name": "learned", "max_length": 512},
        max_position_embeddings=512,
        source="Devlin et al. 2019 (arXiv 1810.04805); bert-base-uncased config.json",
    ),
    Preset(
        name="gpt2",
        description="GPT-2 (all sizes): learned absolute embeddings, n_positions 1024.",
        scheme={"name": "learned", "max_length": 1024},
        max_position_embeddings=1024,
        source="Radford et al. 2019; gpt2 config.json (n_positions 1024)",
    ),
    Preset(
        name="transformer",
        description="Original Transformer: fixed sinusoidal embeddings added to the input.",
        scheme={"name": "sinusoidal", "base": 10000.0},
        max_position_embeddings=None,
        source="Vaswani et al. 2017 (arXiv 1706.03762), section 3.5",
    ),
    Preset(
        name="t5",
        description=(
            "T5 / T5 v1.1: learned bucketed relative bias shared across layers; "
            "bidirectional buckets in the encoder, causal in the decoder (the scheme "
            "follows the model); trained on 512-token inputs."
        ),
        scheme={"name": "t5", "num_buckets": 32, "max_distance": 128},
        max_position_embeddings=None,
        source=(
            "Raffel et al. 2020 (arXiv 1910.10683); t5-base config.json "
            "(relative_attention_num_buckets 32, relative_attention_max_distance 128)"
        ),
    ),
    Preset(
        name="transformer-xl",
        description=(
            "Transformer-XL (WikiText-103 model): A^rel = q.k + q.W_R R_{i-j} + u.k + "
            "v.W_R R_{i-j}, sinusoidal R of size d_model = N * H, distances clamped at 1000; "
            "causal (the segment memory is not modelled)."
        ),
        scheme={"name": "xl", "clamp_len": 1000},
        max_position_embeddings=None,
        source=(
            "Dai et al. 2019 (arXiv 1901.02860), section 3.3; transfo-xl-wt103 config.json "
            "(clamp_len 1000, d_model 1024, n_head 16, d_head 64)"
        ),
    ),
    Preset(
        name="xlnet",
        description=(
            "XLNet (base/large): Transformer-XL's relative attention, bidirectional "
            "(attn_type 'bi'), no clamp; the scheme follows the model's direction."
        ),
        scheme={"name": "xl"},
        max_position_embeddings=None,
        source=(
            "Yang et al. 2019 (arXiv 1906.08237); xlnet-base-cased config.json "
            "(attn_type bi, clamp_len -1, d_model 768, n_head 12, d_head 64)"
        ),
    ),
    Preset(
        name="deberta",
        description=(
            "DeBERTa (v1 base/large): disentangled attention (c2p and p2c), relative "
            "distances clipped to [-512, 512), logits over sqrt(3 d); no absolute "
            "position on the input (position_biased_input false)."
        ),
        scheme={"name": "deberta", "position_buckets": None, "max_relative_positions": 512},
        max_position_embeddings=512,
        source=(
            "He et al. 2021 (arXiv 2006.03654); microsoft/deberta-base config.json "
            "(max_relative_positions -1 -> max_position_embeddings 512, pos_att_type c2p|p2c)"
        ),
    ),
    Preset(
        name="deberta-v2",
        description=(
            "DeBERTa-v2 (xlarge/xxlarge): disentangled attention with log-bucketed relative "
            "positions (256 buckets each way, exact up to 128, bucket 255 at 511)."
        ),
        scheme={"name": "deberta", "position_buckets": 256, "max_relative_positions": 512},
        max_position_embeddings=512,
        source=(
            "He et al. 2021 (arXiv 2006.03654); microsoft/deberta-v2-xlarge config.json "
            "(position_buckets 256, max_relative_positions -1 -> 512, pos_att_type p2c|c2p)"
        ),
    ),
    Preset(
        name="deberta-v3",
        description=(
            "DeBERTa-v3 (xsmall to large): the v2 attention with log-bucketed relative "
            "positions; the relative table is projected by each layer's own q/k "
            "(share_att_key), here learned per layer."
        ),
        scheme={"name": "deberta", "position_buckets": 256, "max_relative_positions": 512},
        max_position_embeddings=512,
        source=(
            "He et al. 2023, DeBERTaV3 (arXiv 2111.09543); microsoft/deberta-v3-base "
            "config.json (position_buckets 256, max_relative_positions -1 -> 512, "
            "share_att_key true)"
        ),
    ),
    Preset(
        name="tupe",
        description=(
            "TUPE-R (BERT-base sized): untied positional correlation of a learned 512-row "
            "table over sqrt(2d), [CLS] untied in the encoder, plus T5 buckets."
        ),
        scheme={
            "name": "tupe",
            "max_length": 512,
            "untie_cls": True,
            "relative": True,
            "num_buckets": 32,
            "max_distance": 128,
        },
        max_position_embeddings=512,
        source=(
            "Ke et al. 2021 (arXiv 2006.15595), sections 3.2-3.3; github.com/guolinke/TUPE "
            "README (MAX_POSITIONS 512, --rel-pos) and transformer_sentence_encoder.py "
            "(rel_pos_bins 32, max_rel_pos 128)"
        ),
    ),
    Preset(
        name="gpt-j",
        description="GPT-J-6B: RoPE on the first 64 of 256 head dims, interleaved pairs.",
        rope=RopeSettings(
            head_dim=256,
            base=10000.0,
            rotary_fraction=0.25,
            layout="interleaved",
            max_position_embeddings=2048,
        ),
        source="EleutherAI GPT-J-6B config.json (rotary_dim 64, n_embd 4096, n_head 16)",
    ),
    Preset(
        name="gpt-neox",
        description="GPT-NeoX-20B / Pythia: RoPE on 25% of each head, rotate-half layout.",
        rope=RopeSettings(
            head_dim=96,
            base=10000.0,
            rotary_fraction=0.25,
            layout="half",
            max_position_embeddings=2048,
        ),
        source=(
            "Black et al. 2022 (arXiv 2204.06745); gpt-neox-20b config.json "
            "(rotary_pct 0.25, hidden_size 6144, 64 heads)"
        ),
    ),
    Preset(
        name="llama-2",
        description="Llama 2 (7B-70B): RoPE base 10000, 4096 context, rotate-half (HF weights).",
        rope=RopeSettings(
            head_dim=128,
            base=10000.0,
            max_position_embeddings=4096,
        ),
        source="Touvron et al. 2023 (arXiv 2307.09288); Llama-2-7b-hf config.json",
    ),
    Preset(
        name="llama-3.1",
        description=(
            "Llama 3.1 (8B-405B): RoPE base 500000 with llama3 frequency scaling "
            "(factor 8, low 1, high 4, original 8192) to a 131072 context."
        ),
        rope=RopeSettings(
            head_dim=128,
            base=500000.0,
            scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            max_position_embeddings=131072,
        ),
        source="Meta Llama 3.1 (2024), Llama-3.1-8B config.json",
    ),
    Preset(
        name="mistral",
        description=(
            "Mistral 7B v0.2 / v0.3: RoPE base 1e6, 32768 context, no sliding window "
            "(v0.1 used base 10000 with a 4096-token sliding window)."
        ),
        rope=RopeSettings(
            head_dim=128,
            base=1000000.0,
            max_position_embeddings=32768,
        ),
        source="Mistral-7B-Instruct-v0.2 config.json (rope_theta 1000000.0)",
    ),
    Preset(
        name="qwen2",
        description="Qwen2 (7B-Instruct): RoPE base 1e6, 32768 context.",
        rope=RopeSettings(
            head_dim=128,
            base=1000000.0,
            max_position_embeddings=32768,
        ),
        source="Yang et al. 2024 (arXiv 2407.10671); Qwen2-7B-Instruct config.json",
    ),
    Preset(
        name="falcon",
        description="Falcon-7B / 40B: RoPE base 10000 on full heads, rotate-half, 2048 context.",
        rope=RopeSettings(
            head_dim=64,
            base=10000.0,
            max_position_embeddings=2048,
        ),
        source="Almazrouei et al. 2023 (arXiv 2311.16867); falcon-7b config.json (head 64)",
    ),
    Preset(
        name="phi-3",
        description=(
            "Phi-3-mini-128k-instruct (first release): LongRoPE, short factors up to "
            "4096 tokens, long factors beyond; factor 32 = 131072 / 4096 gives the "
            "attention factor sqrt(1 + ln 32 / ln 4096)."
        ),
        rope=RopeSettings(
            head_dim=96,
            base=10000.0,
            scaling={
                "rope_type": "longrope",
                "factor": 32.0,
                "original_max_position_embeddings": 4096,
                "short_factor": list(_PHI3_MINI_128K_SHORT),
                "long_factor": list(_PHI3_MINI_128K_LONG),
            },
            max_position_embeddings=131072,
        ),
        source=(
            "Abdin et al. 2024 (arXiv 2404.14219); Ding et al. 2024 (arXiv 2402.13753); "
            "Phi-3-mini-128k-instruct config.json (2024-04)"
        ),
    ),
    Preset(
        name="deepseek-v2",
        description=(
            "DeepSeek-V2: YaRN (factor 40, original 4096, mscale = mscale_all_dim = 0.707, "
            "so attention factor 1; the model scales its softmax by mscale^2 instead) on "
            "the decoupled 64-dim MLA rope head, interleaved pairs."
        ),
        rope=RopeSettings(
            head_dim=64,
            base=10000.0,
            layout="interleaved",
            scaling={
                "rope_type": "yarn",
                "factor": 40.0,
                "original_max_position_embeddings": 4096,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "mscale": 0.707,
                "mscale_all_dim": 0.707,
            },
            max_position_embeddings=163840,
        ),
        source="DeepSeek-AI 2024 (arXiv 2405.04434); DeepSeek-V2 config.json",
    ),
    Preset(
        name="deepseek-v3",
        description=(
            "DeepSeek-V3: YaRN (factor 40, original 4096, mscale = mscale_all_dim = 1.0, "
            "so attention factor 1; the model scales its softmax by mscale^2 instead) on "
            "the decoupled 64-dim MLA rope head, interleaved pairs."
        ),
        rope=RopeSettings(
            head_dim=64,
            base=10000.0,
            layout="interleaved",
            scaling={
                "rope_type": "yarn",
                "factor": 40.0,
                "original_max_position_embeddings": 4096,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "mscale": 1.0,
                "mscale_all_dim": 1.0,
            },
            max_position_embeddings=163840,
        ),
        source="DeepSeek-AI 2024 (arXiv 2412.19437); DeepSeek-V3 config.json",
    ),
    Preset(
        name="bloom",
        description="BLOOM (560M-176B): ALiBi, no position embeddings; trained at 2048 tokens.",
        scheme={"name": "alibi"},
        max_position_embeddings=2048,
        source="BigScience 2022 (arXiv 2211.05100)",
    ),
    Preset(
        name="mpt",
        description="MPT-7B / 30B: ALiBi; MPT-7B trained at 2048 tokens.",
        scheme={"name": "alibi"},
        max_position_embeddings=2048,
        source="MosaicML 2023, MPT-7B config.json (alibi true, max_seq_len 2048)",
    ),
    Preset(
        name="baichuan2-13b",
        description="Baichuan 2 13B: ALiBi (the 7B model uses RoPE instead); 4096 context.",
        scheme={"name": "alibi"},
        max_position_embeddings=4096,
        source="Yang et al. 2023 (arXiv 2309.10305)",
    ),
)

PRESETS: Mapping[str, Preset] = types.MappingProxyType({p.name: p for p in _PRESET_LIST})
"""All presets by name."""


def list_presets() -> list[str]:
    """Preset names, in table order.

    Example:
        >>> list_presets()[:2]
        ['bert', 'gpt2']
    """
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (case-insensitive; "_" and " " read as "-").

    Raises:
      ValueError: unknown name; the message lists the valid names.

    Example:
        >>> get_preset("Llama-3.1").max_position_embeddings
        131072
    """
    key = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {list_presets()}")
    return PRESETS[key]


def preset_rope_settings(name: str | Preset) -> RopeSettings:
    """The `RopeSettings` of a RoPE preset (by name or Preset).

    Example:
        >>> preset_rope_settings("gpt-j").num_rotary_dims
        64
    """
    preset = name if isinstance(name, Preset) else get_preset(name)
    return preset.rope_settings()


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _settings_text(preset: Preset) -> str:
    scheme = preset.scheme
    if preset.rope is not None:
        parts = [f"base {_fmt(scheme['base'])}"]
        if scheme.get("rotary_fraction", 1.0) != 1.0:
            settings = preset.rope_settings()
            parts.append(f"rotary {settings.num_rotary_dims}/{settings.head_dim} dims")
        elif preset.head_dim is not None:
            parts.append(f"head {preset.head_dim}")
        parts.append(f"{scheme.get('layout', 'half')} layout")
        scaling = scheme.get("scaling")
        if scaling:
            keys = [
                k
                for k in (
                    "factor",
                    "original_max_position_embeddings",
                    "low_freq_factor",
                    "high_freq_factor",
                    "mscale",
                    "mscale_all_dim",
                )
                if k in scaling
            ]
            text = ", ".join(
                f"{'original' if k == 'original_max_position_embeddings' else k} {_fmt(scaling[k])}"
                for k in keys
            )
            parts.append(f"{scaling['rope_type']} scaling ({text})")
    else:
        parts = [f"{k} {_fmt(v)}" for k, v in scheme.items() if k != "name"]
    if preset.max_position_embeddings is not None:
        parts.append(f"context {preset.max_position_embeddings}")
    return "; ".join(parts) if parts else "-"


def presets_table_markdown() -> str:
    """A markdown table of the presets: model, encoding, settings.

    Example:
        >>> presets_table_markdown().splitlines()[0]
        '| model | encoding | settings |'
    """
    lines = ["| model | encoding | settings |", "|---|---|---|"]
    for preset in PRESETS.values():
        lines.append(f"| {preset.name} | {preset.encoding} | {_settings_text(preset)} |")
    return "\n".join(lines)
