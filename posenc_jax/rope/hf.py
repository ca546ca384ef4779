"""RoPE settings of a model, read offline from a Hugging Face ``config.json`` dict.

`RopeSettings` holds everything that fixes a model's RoPE (head dim, base,
rotary fraction, scaling, layout); `rope_from_hf_config` reads it from a parsed
``config.json`` as transformers' ``standardize_rope_params`` and
``ROPE_INIT_FUNCTIONS`` would, for Llama, GPT-NeoX, GPT-J, Phi-3 and
DeepSeek-V2/V3 style configs.

Shape legend: H head dim, R rotary dim (``int(H * rotary_fraction)``).

Example:
    >>> s = rope_from_hf_config({"model_type": "gptj", "n_embd": 4096, "n_head": 16,
    ...     "rotary_dim": 64, "n_positions": 2048})
    >>> s.head_dim, s.rotary_fraction, s.layout
    (256, 0.25, 'interleaved')

References: Hugging Face transformers ``modeling_rope_utils.py``; Su et al. 2021,
"RoFormer: Enhanced Transformer with Rotary Position Embedding" (arXiv 2104.09864).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax

from posenc_jax._checks import check_choice
from posenc_jax.rope.frequencies import rope_frequencies, rotary_dim
from posenc_jax.rope.rotation import LAYOUTS
from posenc_jax.rope.scaling import RopeScaling, as_scaling, canonical_rope_type

__all__ = [
    "RopeSettings",
    "rope_from_hf_config",
]


@dataclasses.dataclass(frozen=True)
class RopeSettings:
    """Everything that fixes a model's RoPE: sizes, base, scaling and layout.

    `num_rotary_dims` is R; `frequencies` gives the schedule at a sequence length.

    Attributes:
      head_dim: H.
      base: rope_theta.
      rotary_fraction: fraction of H that rotates.
      scaling: a `RopeScaling` or None (a dict is parsed on construction).
      max_position_embeddings: the model's advertised context length, or None.
      layout: "half" or "interleaved".
      keep_fraction: p-RoPE's fraction of frequencies kept (Gemma 4's "proportional").

    Example:
        >>> s = RopeSettings(head_dim=64, base=10000.0)
        >>> s.frequencies()[0].shape
        (32,)
        >>> RopeSettings(head_dim=256, rotary_fraction=0.25).num_rotary_dims
        64

    References: Su et al. 2021, RoFormer (arXiv 2104.09864).
    """

    head_dim: int
    base: float = 10000.0
    rotary_fraction: float = 1.0
    scaling: RopeScaling | None = None
    max_position_embeddings: int | None = None
    layout: str = "half"
    keep_fraction: float = 1.0

    def __post_init__(self) -> None:
        check_choice(self.layout, "layout", LAYOUTS, "rope")
        if self.scaling is not None:
            scaling = as_scaling(self.scaling, base=self.base, rotary_fraction=self.rotary_fraction)
            object.__setattr__(self, "scaling", scaling)
        # Validates head_dim, rotary_fraction, base and the scaling's list lengths.
        rope_frequencies(
            self.head_dim,
            base=self.base,
            rotary_fraction=self.rotary_fraction,
            scaling=self.scaling,
            keep_fraction=self.keep_fraction,
        )

    @property
    def num_rotary_dims(self) -> int:
        """R = int(head_dim * rotary_fraction), the number of rotated features of a head."""
        return rotary_dim(self.head_dim, self.rotary_fraction)

    def frequencies(self, seq_len: int | jax.Array | None = None) -> tuple[jax.Array, float]:
        """``(inv_freq [R/2] float32, attention_factor)`` at this sequence length.

        ``seq_len`` is what `rope_frequencies` accepts: None, an int, a traced
        scalar, or a ``[B]`` array of one length a row (``[B, R/2]`` frequencies
        for dynamic NTK and LongRoPE).
        """
        return rope_frequencies(
            self.head_dim,
            base=self.base,
            rotary_fraction=self.rotary_fraction,
            scaling=self.scaling,
            seq_len=seq_len,
            keep_fraction=self.keep_fraction,
        )

    def to_scheme_config(self) -> dict[str, Any]:
        """The settings as a ``{"name": "rope", ...}`` dict for the scheme registry."""
        return {
            "name": "rope",
            "base": float(self.base),
            "rotary_fraction": float(self.rotary_fraction),
            "layout": self.layout,
            "scaling": None if self.scaling is None else self.scaling.to_dict(),
            "keep_fraction": float(self.keep_fraction),
        }


def _require(config: Mapping[str, Any], key: str, why: str) -> Any:
    """``config[key]``, or an error that names the key and why it is needed."""
    value = config.get(key)
    if value is None:
        raise ValueError(f"rope_from_hf_config: the config needs {key!r} ({why})")
    return value


def _hf_base(config: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    """rope_theta: the scaling dict's, else the top level's, else GPT-NeoX's, else 10000."""
    base = params.get("rope_theta")
    if base is None:
        base = config.get("rope_theta", config.get("rotary_emb_base", 10000.0))
    return base


def _hf_head_dim(config: Mapping[str, Any]) -> int:
    """H: qk_rope_head_dim (DeepSeek), else head_dim, else hidden size / heads."""
    # DeepSeek-V2/V3 (MLA) rotate a separate qk_rope_head_dim part, which transformers
    # stores as head_dim.
    head_dim = config.get("qk_rope_head_dim", config.get("head_dim"))
    if head_dim is None:
        hidden = config.get("hidden_size", config.get("n_embd"))
        heads = config.get("num_attention_heads", config.get("n_head"))
        if hidden is None:
            _require(config, "hidden_size", "or 'head_dim', to size the heads")
        if heads is None:
            _require(config, "num_attention_heads", "or 'head_dim', to size the heads")
        head_dim = int(hidden) // int(heads)
    return int(head_dim)


def _hf_rotary_fraction(
    config: Mapping[str, Any], params: Mapping[str, Any], head_dim: int
) -> float:
    """partial_rotary_factor, else GPT-NeoX's rotary_pct, else GPT-J's rotary_dim / H, else 1."""
    fraction = params.get("partial_rotary_factor", config.get("partial_rotary_factor"))
    if fraction is None and config.get("rotary_pct") is not None:
        fraction = config["rotary_pct"]
    if fraction is None and config.get("rotary_dim") is not None:
        fraction = int(config["rotary_dim"]) / head_dim
    return 1.0 if fraction is None else float(fraction)


def _hf_original_length(
    config: Mapping[str, Any], params: Mapping[str, Any], rope_type: str
) -> Any:
    """L for llama3 / yarn / longrope: top level (Phi-3), else the scaling dict's, else max."""
    if config.get("original_max_position_embeddings") is not None:
        return config["original_max_position_embeddings"]
    if params.get("original_max_position_embeddings") is None:
        return _require(
            config,
            "max_position_embeddings",
            f"{rope_type} needs an original length; none in the scaling dict",
        )
    return params["original_max_position_embeddings"]


def _hf_scaling_dict(
    config: Mapping[str, Any], params: Mapping[str, Any], rope_type: str
) -> dict[str, Any]:
    """A copy of ``params`` in `RopeScaling` terms: canonical type, lengths and factor set."""
    params = dict(params)
    params.pop("type", None)
    params["rope_type"] = rope_type
    params.pop("rope_theta", None)
    params.pop("partial_rotary_factor", None)
    if rope_type in ("llama3", "yarn", "longrope"):
        params["original_max_position_embeddings"] = _hf_original_length(config, params, rope_type)
        # As transformers: factor defaults to max_position_embeddings / original length.
        needs_factor = rope_type == "yarn" or (
            rope_type == "longrope" and params.get("attention_factor") is None
        )
        if params.get("factor") is None and needs_factor:
            max_positions = _require(config, "max_position_embeddings", f"{rope_type} factor")
            original = float(params["original_max_position_embeddings"])
            params["factor"] = float(max_positions) / original
    if rope_type == "dynamic":
        params["original_max_position_embeddings"] = _require(
            config, "max_position_embeddings", "dynamic NTK scales against it"
        )
    return params


def _hf_scaling(config: Mapping[str, Any], params: Mapping[str, Any]) -> RopeScaling | None:
    """The `RopeScaling` of a config's scaling dict ``params``; None for none or "default"."""
    if not params:
        return None
    rope_type = params.get("rope_type", params.get("type", "default"))
    if str(config.get("model_type", "")) == "phi3" and str(rope_type) in ("su", "yarn"):
        rope_type = "longrope"  # transformers' Phi3Config renames both
    rope_type = canonical_rope_type(rope_type)
    # Parsed for "default" too, so that unknown keys are rejected.
    scaling = RopeScaling.from_dict(_hf_scaling_dict(config, params, rope_type))
    return None if rope_type == "default" else scaling


def _hf_layout(config: Mapping[str, Any]) -> str:
    """The layout: "interleaved" for GPT-J and DeepSeek-V2/V3 or by ``rope_interleave``."""
    model_type = str(config.get("model_type", ""))
    interleaved = model_type in ("gptj", "deepseek_v2") or (
        model_type == "deepseek_v3" and config.get("rope_interleave", True)
    )
    if config.get("rope_interleave") is not None and model_type != "deepseek_v3":
        interleaved = bool(config["rope_interleave"])
    return "interleaved" if interleaved else "half"


def rope_from_hf_config(config: Mapping[str, Any], *, layout: str | None = None) -> RopeSettings:
    """Reads RoPE settings from a Hugging Face ``config.json`` dict, offline.

    Follows transformers' ``standardize_rope_params`` and ``ROPE_INIT_FUNCTIONS``:

    * scaling from ``rope_scaling`` (preferred when set, as transformers does)
      or ``rope_parameters``; ``rope_type`` or legacy ``type``;
    * base from ``rope_parameters["rope_theta"]``, else ``rope_theta``, else
      ``rotary_emb_base`` (GPT-NeoX), else 10000;
    * rotary fraction from ``partial_rotary_factor`` (in the scaling dict or top
      level), else ``rotary_pct`` (GPT-NeoX), else ``rotary_dim`` / head_dim
      (GPT-J), else 1;
    * head_dim from ``qk_rope_head_dim`` (DeepSeek-V2/V3), else ``head_dim``,
      else ``hidden_size // num_attention_heads`` (``n_embd // n_head`` for GPT-J);
    * ``original_max_position_embeddings`` for llama3 / yarn / longrope: the top
      level value wins (Phi-3), else the scaling dict's, else
      ``max_position_embeddings``;
    * dynamic NTK uses ``max_position_embeddings`` as its original length;
    * yarn / longrope without ``factor``: max_position_embeddings / original;
    * layout "interleaved" for GPT-J and DeepSeek-V2/V3 (``rope_interleave``),
      else "half"; the ``layout`` argument overrides;
    * ``rope_type="proportional"`` (Gemma 4) is p-RoPE: ``keep_fraction`` =
      ``partial_rotary_factor`` over the whole head, and its ``factor`` a linear
      scaling.

    Args:
      config: the parsed ``config.json``.
      layout: force "half" or "interleaved".

    Returns:
      A `RopeSettings`.

    Raises:
      ValueError: a required key is missing (named in the message) or a setting
        is invalid.

    Example:
        >>> s = rope_from_hf_config({"hidden_size": 4096, "num_attention_heads": 32,
        ...     "max_position_embeddings": 131072, "rope_theta": 500000.0,
        ...     "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        ...         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})
        >>> s.head_dim, s.scaling.rope_type
        (128, 'llama3')

    References: Hugging Face transformers ``modeling_rope_utils.py``.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"rope_from_hf_config: config must be a dict; got {type(config).__name__}")
    params = dict(config.get("rope_scaling") or config.get("rope_parameters") or {})
    base = _hf_base(config, params)
    head_dim = _hf_head_dim(config)
    fraction = _hf_rotary_fraction(config, params, head_dim)
    max_len = config.get("max_position_embeddings", config.get("n_positions"))
    keep = 1.0
    if params.get("rope_type", params.get("type")) == "proportional":
        # Gemma 4: p-RoPE, the first int(p * H // 2) frequencies base^(-2i/H) of the
        # whole head, zeros after; factor divides them (a linear scaling).
        keep, fraction = fraction, 1.0
        factor = float(params.get("factor", 1.0))
        params = {"rope_type": "linear", "factor": factor} if factor != 1.0 else {}
    scaling = _hf_scaling(config, params)
    return RopeSettings(
        head_dim=head_dim,
        base=float(base),
        rotary_fraction=fraction,
        scaling=scaling,
        max_position_embeddings=None if max_len is None else int(max_len),
        layout=_hf_layout(config) if layout is None else layout,
        keep_fraction=keep,
    )
