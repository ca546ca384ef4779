"""posenc-jax: positional encodings and length extrapolation for JAX.

Pure functions (no Flax) for every scheme, the scheme registry that composes them
into attention hooks, and dense / fused / blockwise attention. The Flax NNX modules
live in :mod:`posenc_jax.nn`; model-family RoPE settings in :mod:`posenc_jax.presets`.
"""

from posenc_jax.absolute import (
    OUT_OF_RANGE_POLICIES,
    init_learned_table,
    learned_lookup,
    sinusoidal,
)
from posenc_jax.alibi import alibi_bias, alibi_slopes
from posenc_jax.attention import (
    MASK_VALUE,
    AttentionConfig,
    ImplementationChoice,
    attend,
    attention_weights,
    blockwise_attention,
    dense_attention,
    explain_implementation,
    select_implementation,
)
from posenc_jax.cope import cope_bias, cope_interpolate, cope_positions
from posenc_jax.deberta import (
    deberta_c2p,
    deberta_log_bucket,
    deberta_p2c,
    deberta_relative_index,
    deberta_span,
)
from posenc_jax.fire import fire_bias, fire_normalized_distance, init_fire_params
from posenc_jax.fox import cumulative_log_forget, fox_bias, log_forget_gates
from posenc_jax.kerple import KERPLE_KINDS, init_kerple_params, kerple_bias
from posenc_jax.pope import apply_pope, pope_frequencies
from posenc_jax.random_distances import (
    relative_from_table,
    sample_relative_distances,
    toeplitz_table,
)
from posenc_jax.relative import (
    shaw_key_logits,
    shaw_relative_index,
    shaw_value_term,
    t5_bias,
    t5_relative_bucket,
)
from posenc_jax.rope import (
    LAYOUTS,
    ROPE_TYPES,
    RopeScaling,
    RopeSettings,
    apply_rope,
    convert_rope_layout,
    p_rope_keep_count,
    rope_decay_bound,
    rope_frequencies,
    rope_from_hf_config,
    rotary_dim,
)
from posenc_jax.rope.rectified import (
    RECTIFIED_METHODS,
    dual_chunk_positions,
    far_positions,
    rectified_rope_logits,
)
from posenc_jax.schemes import (
    SCHEMES,
    Scheme,
    context_extension_names,
    list_schemes,
    make_scheme,
    register_scheme,
)
from posenc_jax.softmax_scale import (
    SOFTMAX_SCALES,
    SoftmaxScale,
    causal_key_count,
    llama4_multiplier,
    logn_multiplier,
    make_softmax_scale,
    qwen_logn_multiplier,
    scale_queries,
    ssmax_multiplier,
)
from posenc_jax.stick_breaking import stick_breaking_log_weights, stick_breaking_weights
from posenc_jax.transformer_xl import xl_relative_logits
from posenc_jax.tupe import tupe_bias, tupe_positional_logits
from posenc_jax.xpos import apply_xpos, xpos_zeta

__version__ = "0.1.0"

__all__ = [
    "KERPLE_KINDS",
    "LAYOUTS",
    "MASK_VALUE",
    "OUT_OF_RANGE_POLICIES",
    "RECTIFIED_METHODS",
    "ROPE_TYPES",
    "SCHEMES",
    "SOFTMAX_SCALES",
    "AttentionConfig",
    "ImplementationChoice",
    "RopeScaling",
    "RopeSettings",
    "Scheme",
    "SoftmaxScale",
    "alibi_bias",
    "alibi_slopes",
    "apply_pope",
    "apply_rope",
    "apply_xpos",
    "attend",
    "attention_weights",
    "blockwise_attention",
    "causal_key_count",
    "context_extension_names",
    "convert_rope_layout",
    "cope_bias",
    "cope_interpolate",
    "cope_positions",
    "cumulative_log_forget",
    "deberta_c2p",
    "deberta_log_bucket",
    "deberta_p2c",
    "deberta_relative_index",
    "deberta_span",
    "dense_attention",
    "dual_chunk_positions",
    "explain_implementation",
    "far_positions",
    "fire_bias",
    "fire_normalized_distance",
    "fox_bias",
    "init_fire_params",
    "init_kerple_params",
    "init_learned_table",
    "kerple_bias",
    "learned_lookup",
    "list_schemes",
    "llama4_multiplier",
    "log_forget_gates",
    "logn_multiplier",
    "make_scheme",
    "make_softmax_scale",
    "p_rope_keep_count",
    "pope_frequencies",
    "qwen_logn_multiplier",
    "rectified_rope_logits",
    "register_scheme",
    "relative_from_table",
    "rope_decay_bound",
    "rope_frequencies",
    "rope_from_hf_config",
    "rotary_dim",
    "sample_relative_distances",
    "scale_queries",
    "select_implementation",
    "shaw_key_logits",
    "shaw_relative_index",
    "shaw_value_term",
    "sinusoidal",
    "ssmax_multiplier",
    "stick_breaking_log_weights",
    "stick_breaking_weights",
    "t5_bias",
    "t5_relative_bucket",
    "toeplitz_table",
    "tupe_bias",
    "tupe_positional_logits",
    "xl_relative_logits",
    "xpos_zeta",
]
