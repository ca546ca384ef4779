"""Schemes where the tokens decide positions or decay: forgetting attention (FoX),
stick-breaking attention and contextual position encoding (CoPE).

FoX fills the ``token_state`` hook (cumulative log forget gates computed from the
layer input, carried across KV-cache calls) and the logit hook (their difference
between query and key). Stick-breaking replaces the softmax (``normalization``):
each key takes a sigmoid share of what the nearer keys left. CoPE counts the keys
its gates select between key and query and embeds that count. None reads a
position: the causal order of the keys is all they use.

References: Lin et al. 2025, "Forgetting Transformer" (arXiv 2503.02130); Tan et al.
2024, "Scaling Stick-Breaking Attention" (arXiv 2410.17980); Golovneva et al. 2024,
"Contextual Position Encoding" (arXiv 2405.18719).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from posenc_jax import cope, fox
from posenc_jax._checks import as_int, check_choice, finite_float
from posenc_jax.schemes.base import Scheme
from posenc_jax.schemes.registry import register_scheme
from posenc_jax.stick_breaking import MASK_VALUE

__all__ = ["CopeScheme", "FoxScheme", "StickBreakingScheme"]


@register_scheme
@dataclasses.dataclass(frozen=True)
class FoxScheme(Scheme):
    """Forgetting attention: logits += sum of log forget gates between key and query.

    Per attention layer, a gate projection ``w [D, N]`` (normal, std 0.02) and bias
    ``b [N]`` give ``log f_t = log sigmoid(w . x_t + b)`` per head; the state of token t
    is ``L_t = sum_{l<=t} log f_l`` and the logit of query i for key j gains
    ``L_i - L_j`` (see `posenc_jax.fox`). Causal only: the decay runs from each key
    forward to the query.

    Settings:
      bias_init: initial gate bias b for every head (0: gates start near 0.5, as in
        the reference's default ``"full"`` gate; a larger value starts with longer
        memory, ``sigmoid(b)`` per token).

    Example:
        >>> scheme = FoxScheme().configure(causal=True)
        >>> sorted(scheme.hooks)
        ['logit_bias', 'token_state']

    References: Lin, Nikishin, He, Courville 2025, "Forgetting Transformer: Softmax
    Attention with a Forget Gate" (ICLR 2025, arXiv 2503.02130).
    """

    name: ClassVar[str] = "fox"
    hooks: ClassVar[frozenset[str]] = frozenset({"token_state", "logit_bias"})
    causal_only: ClassVar[str | None] = "its decay runs from each key forward to the query"
    bias_init: float = 0.0

    def __post_init__(self) -> None:
        finite_float(self.bias_init, "bias_init", "fox")

    def init_token_params(self, key, *, d_model, num_heads):
        # modeling_forgetting_transformer.py: nn.init.normal_(weight, std=0.02), zeros_(bias)
        weight = 0.02 * jax.random.normal(key, (d_model, num_heads), jnp.float32)
        return {"fgate_w": weight, "fgate_b": jnp.full((num_heads,), self.bias_init, jnp.float32)}

    def token_state(self, params, x, carry, *, key_mask=None):
        log_f = fox.log_forget_gates(x, params["fgate_w"], params["fgate_b"])  # [B, T, N]
        return fox.cumulative_log_forget(log_f, carry, key_mask=key_mask)

    def logit_bias(self, params, q, q_positions, k_positions, *, q_state=None, k_state=None):
        if q_state is None or k_state is None:
            raise ValueError(
                "fox computes its logit term from per-token states: pass q_state [B, T, N] "
                "and k_state [B, S, N] (MultiHeadAttention computes them from its input "
                "with scheme.token_state)"
            )
        return fox.fox_bias(q_state, k_state)  # [B, N, T, S]


@register_scheme
@dataclasses.dataclass(frozen=True)
class StickBreakingScheme(Scheme):
    """Stick-breaking attention: ``A_ij = sigmoid(z_ij) prod_{j<k<i} (1 - sigmoid(z_ik))``.

    The weights replace the softmax in every attention path (dense, blockwise over
    key tiles from the nearest to the farthest, KV-cache decoding); no positional
    encoding is added. Causal only.

    Settings:
      attend_current: a query also attends its own key (the reference's
        ``attend_current``; default False: only earlier keys, as in its tests and
        the authors' model code, which drops the current key).
      remainder: what the stick that no key took adds to the output: "bias" (a
        learned per-head vector [N, H], zeros at init, times the remainder, as the
        authors' model does before its per-head group norm) or "drop".

    Example:
        >>> StickBreakingScheme().configure(causal=True).normalization
        'stick_breaking'

    References: Tan, Shen, Yang, Courville, Panda 2024, "Scaling Stick-Breaking
    Attention" (arXiv 2410.17980); reference code shawntan/stickbreaking-attention
    (stickbreaking_attention/sb_ref.py; tests/test_attn.py for ``attend_current``) and
    IBM/dolomite-engine (stickbreaking_attention.py: ``head_bias`` times the remainder).
    """

    name: ClassVar[str] = "stick_breaking"
    hooks: ClassVar[frozenset[str]] = frozenset({"logit_bias", "remainder"})
    normalization: ClassVar[str] = "stick_breaking"
    causal_only: ClassVar[str | None] = (
        "each query breaks its stick from the nearest earlier key back"
    )
    attend_current: bool = False
    remainder: str = "bias"

    def __post_init__(self) -> None:
        if not isinstance(self.attend_current, bool):
            raise ValueError(
                f"stick_breaking: attend_current must be True or False; got {self.attend_current!r}"
            )
        check_choice(self.remainder, "remainder", ("bias", "drop"), "stick_breaking")

    def init_attention_params(self, key, *, num_heads, head_dim):
        del key
        if self.remainder == "drop":
            return {}
        return {"head_bias": jnp.zeros((num_heads, head_dim), jnp.float32)}

    def logit_bias(self, params, q, q_positions, k_positions):
        if self.attend_current:
            return jnp.zeros((), jnp.float32)
        q_pos = jnp.asarray(q_positions)
        k_pos = jnp.asarray(k_positions)
        if q_pos.ndim == 1:
            q_pos, k_pos = q_pos[None], jnp.broadcast_to(k_pos, (1, *k_pos.shape[-1:]))
        same = q_pos[:, None, :, None] == k_pos[:, None, None, :]  # [B, 1, T, S]
        # The query's own key: beta = sigmoid(-1e30) = 0 takes nothing and breaks nothing.
        return jnp.where(same, MASK_VALUE, 0.0).astype(jnp.float32)

    def remainder_term(self, params, remainder):
        if self.remainder == "drop":
            return jnp.zeros((), jnp.float32)
        # dolomite-engine: hidden_states + rem[..., None] * head_bias[None, :, None, :]
        rem = jnp.swapaxes(remainder, 1, 2)[..., None]  # [B, T, N, 1]
        return rem * params["head_bias"].astype(jnp.float32)  # [B, T, N, H]


@register_scheme
@dataclasses.dataclass(frozen=True)
class CopeScheme(Scheme):
    """Contextual position encoding: positions count the keys the query's gates select.

    ``p_ij = min(sum_{t=j..i} sigmoid(q_i . k_t / sqrt(H)), npos - 1)`` over the keys the
    query may attend, and the logits gain ``q_i . e(p_ij) / sqrt(H)`` with ``e`` the
    position embeddings [H, npos] (zeros at init, shared by the heads) interpolated
    between integer positions (see `posenc_jax.cope`). Causal only, and dense only:
    the position of a key sums the gates of every key up to the query, which a
    blockwise tile does not hold.

    Settings:
      npos: the number of position embeddings; positions are clipped to npos - 1
        (the reference's default is the block size + 1).

    Example:
        >>> CopeScheme(npos=16).configure(causal=True).tiles
        False

    References: Golovneva, Wang, Weston, Sukhbaatar 2024, "Contextual Position Encoding:
    Learning to Count What's Important" (arXiv 2405.18719).
    """

    name: ClassVar[str] = "cope"
    hooks: ClassVar[frozenset[str]] = frozenset({"logit_bias"})
    needs_q_for_bias: ClassVar[bool] = True
    needs_k_for_bias: ClassVar[bool] = True
    needs_mask_for_bias: ClassVar[bool] = True
    tiles: ClassVar[bool] = False
    causal_only: ClassVar[str | None] = "a key's position counts the keys from it to the query"
    npos: int = 64

    def __post_init__(self) -> None:
        npos = as_int(self.npos, "npos", "cope")
        if npos < 2:
            raise ValueError(f"cope needs npos >= 2 position embeddings; got npos={self.npos!r}")

    def init_attention_params(self, key, *, num_heads, head_dim):
        del key, num_heads  # context_position.py: torch.zeros(1, head_dim, npos)
        return {"pos_emb": jnp.zeros((head_dim, self.npos), jnp.float32)}

    def logit_bias(self, params, q, q_positions, k_positions, *, k, allowed):
        return cope.cope_bias(q, k, params["pos_emb"], allowed)  # [B, N, T, S]
