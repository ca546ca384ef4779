"""Length-scaled softmax: a per-query multiplier on the attention logits, for any scheme.

Softmax over n keys flattens as n grows (the largest weight of a fixed set of
logits falls like 1/n). Length-scaled softmax multiplies each query's logits by a
factor that grows with the query's position or with the number of keys it sees,
so attention stays as sharp at long lengths as it was in training:

* ``"logn"``: ``log n`` (Chiang & Cholak 2022, log-length scaled attention),
  `logn_multiplier`.
* ``"qwen"``: ``log(n) / log(L)`` for n > L, else 1, with L the training length
  (Qwen-7B ``use_logn_attn``), `qwen_logn_multiplier`.
* ``"ssmax"``: ``s * log n`` with a learned s per head (Nakanishi 2025,
  Scalable-Softmax), `ssmax_multiplier`.
* ``"llama4"``: ``log(floor((p + 1) / floor_scale) + 1) * attn_scale + 1``
  (Llama 4's attention temperature tuning), `llama4_multiplier`.

Here p is the query's position and n the number of keys it attends: ``p + 1``
for causal attention (`causal_key_count`), the number of allowed keys otherwise.

It is a modifier, not a scheme: it composes with any scheme by scaling the
(already rotated) queries, ``q <- q * multiplier`` (`scale_queries`), which
every attention path (dense, blockwise, cuDNN, KV-cache decoding) then uses
unchanged. Scaling q multiplies ``q . k`` and every logit term that reads q
(Shaw's key term, Transformer-XL, DeBERTa, TUPE); an additive bias that does not
read q (ALiBi, T5, KERPLE, FIRE) is not scaled. That is exactly what Qwen and
Llama 4 do (they scale the query states); SSMax and Chiang & Cholak define the
factor on the whole logit, which is the same for schemes without such a bias.

`SoftmaxScale` holds one choice and its settings (`make_softmax_scale` builds it
from a name or a dict); `posenc_jax.nn.MultiHeadAttention` and the models take
it as ``softmax_scale=``.

Shape legend: B batch, T query length, N heads, H head dim. Multipliers are
float32, ``[..., T]`` (one per query) or ``[..., T, N]`` (SSMax: one per query
and head).

Example:
    >>> positions = jnp.arange(6)
    >>> [round(m, 3) for m in qwen_logn_multiplier(positions, train_length=4).tolist()]
    [1.0, 1.0, 1.0, 1.0, 1.161, 1.292]

References: Chiang & Cholak 2022, "Overcoming a Theoretical Limitation of
Self-Attention" (arXiv 2202.12172); Nakanishi 2025, "Scalable-Softmax Is Superior
for Attention" (arXiv 2501.19399); Qwen-7B ``modeling_qwen.py`` (``QWenAttention``);
Hugging Face transformers ``models/llama4/modeling_llama4.py`` (``Llama4TextAttention``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from posenc_jax._checks import as_int, nonnegative_float, positive_float

__all__ = [
    "SOFTMAX_SCALES",
    "SoftmaxScale",
    "causal_key_count",
    "llama4_multiplier",
    "logn_multiplier",
    "make_softmax_scale",
    "qwen_logn_multiplier",
    "scale_queries",
    "ssmax_multiplier",
]

SOFTMAX_SCALES: tuple[str, ...] = ("logn", "qwen", "ssmax", "llama4")
"""The kinds of `SoftmaxScale`: Chiang & Cholak's log n, Qwen's ``use_logn_attn``,
SSMax (learned s per head) and Llama 4's attention temperature tuning."""


def causal_key_count(positions: jax.Array) -> jax.Array:
    """n = p + 1, the number of keys a causal query at position p sees; at least 1.

    Positions restart per document in packed sequences and skip padding
    (`posenc_jax.nn.positions_from_padding`), so this counts the keys of the
    query's own document. Negative positions count as 0 (n = 1), so every
    multiplier stays finite.

    Args:
      positions: ``[...]`` integer (or float) query positions.

    Returns:
      ``[...]`` float32 counts >= 1.

    Example:
        >>> causal_key_count(jnp.array([0, 1, 7])).tolist()
        [1.0, 2.0, 8.0]
    """
    return jnp.maximum(jnp.asarray(positions, jnp.float32) + 1.0, 1.0)


def _log_count(n: jax.Array) -> jax.Array:
    """log n in float32, with n clamped to >= 1 (a query without keys gets 0, not -inf)."""
    return jnp.log(jnp.maximum(jnp.asarray(n, jnp.float32), 1.0))


def logn_multiplier(n: jax.Array) -> jax.Array:
    """Chiang & Cholak's log-length scaling: the logits of a query over n keys times log n.

    Their scaled attention is ``softmax(log(n) * q . K^T / sqrt(d))``; with n = 1
    the factor is 0, harmless as one key gets weight 1 whatever its logit.

    Args:
      n: ``[...]`` number of keys each query attends (`causal_key_count` for
        causal attention); values below 1 count as 1.

    Returns:
      ``[...]`` float32 ``log n``.

    Example:
        >>> [round(m, 4) for m in logn_multiplier(jnp.array([1, 2, 8])).tolist()]
        [0.0, 0.6931, 2.0794]

    References: Chiang & Cholak 2022, "Overcoming a Theoretical Limitation of
    Self-Attention" (arXiv 2202.12172), log-length scaled attention.
    """
    return _log_count(n)


def _check_train_length(train_length: Any, fn: str) -> int:
    length = as_int(train_length, "train_length", fn)
    if length < 2:
        raise ValueError(
            f"{fn} needs train_length >= 2 (it divides by log(train_length)); "
            f"got train_length={train_length!r}"
        )
    return length


def qwen_logn_multiplier(positions: jax.Array, *, train_length: int) -> jax.Array:
    """Qwen's ``use_logn_attn``: log(n) / log(L) for queries past the training length L, else 1.

    Qwen-7B builds ``logn_list = [math.log(i, seq_length) if i > seq_length else 1
    for i in range(1, 32768)]`` and multiplies the query at 0-based index p by
    entry p, that is i = p + 1 (``query = query * logn_tensor`` in
    ``QWenAttention.forward``, at inference only). Here i = ``causal_key_count(p)``.
    The multiplier is exactly 1 up to the training length, so training is unchanged.

    Args:
      positions: ``[...]`` integer query positions p (0-based); negative ones count as 0.
      train_length: L, Qwen's ``seq_length`` (the training context), >= 2.

    Returns:
      ``[...]`` float32 multipliers, 1 for p < L, ``log(p + 1) / log(L)`` after.

    Raises:
      ValueError: train_length not an int >= 2.

    Example:
        >>> m = qwen_logn_multiplier(jnp.array([0, 3, 4, 15]), train_length=4)
        >>> [round(v, 3) for v in m.tolist()]
        [1.0, 1.0, 1.161, 2.0]

    References: Qwen-7B ``modeling_qwen.py``, ``QWenAttention.__init__`` (``logn_list``)
    and ``QWenAttention.forward`` (``use_logn_attn``).
    """
    length = _check_train_length(train_length, "qwen_logn_multiplier")
    i = causal_key_count(positions)
    return jnp.where(i > length, jnp.log(i) / jnp.float32(math.log(length)), 1.0)


def ssmax_multiplier(n: jax.Array, s: jax.Array) -> jax.Array:
    """Scalable-Softmax: the logits of a query over n keys times ``s * log n``, s per head.

    SSMax replaces ``softmax(z)_i = e^{z_i} / sum_j e^{z_j}`` by
    ``n^{s z_i} / sum_j n^{s z_j} = e^{(s log n) z_i} / sum_j e^{(s log n) z_j}``,
    n the size of z (the keys a query attends) and s a learned scalar per layer
    and head. With ``s = 1 / log(n_ref)`` it equals plain softmax at n = n_ref.

    Args:
      n: ``[...]`` number of keys each query attends (`causal_key_count` for
        causal attention); values below 1 count as 1.
      s: ``[N]`` per-head scales (or a scalar).

    Returns:
      ``[..., N]`` float32 (``[...]`` for a scalar s).

    Example:
        >>> ssmax_multiplier(jnp.array([1, 8]), jnp.array([1.0, 0.5])).round(4)
        Array([[0.    , 0.    ],
               [2.0794, 1.0397]], dtype=float32)

    References: Nakanishi 2025, "Scalable-Softmax Is Superior for Attention"
    (arXiv 2501.19399), the SSMax definition (Sec. 2).
    """
    s = jnp.asarray(s, jnp.float32)
    log_n = _log_count(n)
    return log_n * s if s.ndim == 0 else log_n[..., None] * s


def llama4_multiplier(
    positions: jax.Array, *, floor_scale: float = 8192.0, attn_scale: float = 0.1
) -> jax.Array:
    """Llama 4's attention temperature: ``log(floor((p + 1) / floor_scale) + 1) * attn_scale + 1``.

    Hugging Face transformers applies it to the query states of Llama 4's NoPE
    layers: ``attn_scales = torch.log1p(torch.floor((positions.float() + 1.0) /
    self.floor_scale)) * self.attn_scale + 1.0`` and ``query_states = query_states
    * attn_scales`` (``Llama4TextAttention.forward``, lines 360-367 of
    ``modeling_llama4.py`` in transformers 5.24; defaults ``floor_scale=8192``,
    ``attn_scale=0.1`` in ``configuration_llama4.py``). A step function: 1 below
    position ``floor_scale - 1``, then growing like ``attn_scale * log(p / floor_scale)``.

    Args:
      positions: ``[...]`` integer query positions p (0-based); negative ones count as 0.
      floor_scale: positions per step, > 0.
      attn_scale: the slope in log steps, >= 0.

    Returns:
      ``[...]`` float32 multipliers >= 1.

    Raises:
      ValueError: floor_scale <= 0 or attn_scale < 0 (or not finite).

    Example:
        >>> m = llama4_multiplier(jnp.array([0, 6, 7, 15]), floor_scale=8)
        >>> [round(v, 4) for v in m.tolist()]
        [1.0, 1.0, 1.0693, 1.1099]

    References: Hugging Face transformers ``models/llama4/modeling_llama4.py``
    (``Llama4TextAttention``, ``attn_temperature_tuning``); Meta 2025, "The Llama 4 herd".
    """
    floor_scale = positive_float(floor_scale, "floor_scale", "llama4_multiplier")
    attn_scale = nonnegative_float(attn_scale, "attn_scale", "llama4_multiplier")
    steps = jnp.floor(causal_key_count(positions) / jnp.float32(floor_scale))
    return jnp.log1p(steps) * jnp.float32(attn_scale) + 1.0


def scale_queries(q: jax.Array, multiplier: jax.Array) -> jax.Array:
    """q times a per-query (or per-query-and-head) multiplier, computed in float32.

    Apply it after the scheme's q/k hook (rotation) and before any attention
    path; the result keeps q's dtype.

    Args:
      q: ``[B, T, N, H]``.
      multiplier: ``[T]`` or ``[B, T]`` (one per query, shared by the heads) or
        ``[B, T, N]`` (one per query and head).

    Returns:
      ``[B, T, N, H]`` in q's dtype.

    Raises:
      ValueError: a multiplier of another rank, or one that does not broadcast.

    Example:
        >>> q = jnp.ones((1, 3, 2, 4))
        >>> scale_queries(q, jnp.array([1.0, 2.0, 3.0]))[0, :, 0, 0].tolist()
        [1.0, 2.0, 3.0]
    """
    m = jnp.asarray(multiplier, jnp.float32)
    if m.ndim in (1, 2):
        m = m[..., None, None]  # [(B,) T, 1, 1]
    elif m.ndim == 3:
        m = m[..., None]  # [B, T, N, 1]
    else:
        raise ValueError(
            "scale_queries: multiplier must be [T], [B, T] or [B, T, N] for q [B, T, N, H]; "
            f"got multiplier shape {m.shape}, q shape {q.shape}"
        )
    try:
        jnp.broadcast_shapes(m.shape, q.shape)
    except ValueError:
        raise ValueError(
            f"scale_queries: multiplier shape {jnp.shape(multiplier)} does not fit "
            f"q shape {q.shape} ([T], [B, T] or [B, T, N])"
        ) from None
    return (q.astype(jnp.float32) * m).astype(q.dtype)


@dataclasses.dataclass(frozen=True)
class SoftmaxScale:
    """One length-scaled softmax and its settings; hashable, so a static argument.

    Attributes:
      kind: one of `SOFTMAX_SCALES`: "logn", "qwen", "ssmax" or "llama4".
      train_length: L for "qwen" (required there, >= 2); the others ignore it.
      floor_scale: "llama4" positions per step (8192, as Llama 4).
      attn_scale: "llama4" slope (0.1, as Llama 4).
      s_init: "ssmax" initial per-head s (1.0: Chiang & Cholak's log n at
        initialisation; ``1 / log(L)`` makes the first steps plain softmax at length L).

    `multiplier` gives the ``[B, T, N]`` multipliers from query positions and
    key counts; `init_params` the learned parameters (SSMax's ``{"s": [N]}``,
    else ``{}``).

    Example:
        >>> spec = make_softmax_scale({"kind": "qwen", "train_length": 4})
        >>> spec.multiplier({}, positions=jnp.array([[0, 4]]), n=None).shape
        (1, 2, 1)

    References: see the module docstring.
    """

    kind: str
    train_length: int | None = None
    floor_scale: float = 8192.0
    attn_scale: float = 0.1
    s_init: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in SOFTMAX_SCALES:
            raise ValueError(
                f"softmax_scale: kind must be one of {list(SOFTMAX_SCALES)}; got {self.kind!r}"
            )
        if self.kind == "qwen":
            if self.train_length is None:
                raise ValueError(
                    "softmax_scale 'qwen' needs train_length (the training context L; the "
                    "multiplier is log(n) / log(L) past it)"
                )
            _check_train_length(self.train_length, "softmax_scale 'qwen'")
        elif self.train_length is not None:
            raise ValueError(
                f"softmax_scale {self.kind!r} takes no train_length (only 'qwen' does); "
                f"got train_length={self.train_length!r}"
            )
        positive_float(self.floor_scale, "floor_scale", "softmax_scale")
        nonnegative_float(self.attn_scale, "attn_scale", "softmax_scale")
        s_init = float(self.s_init)
        if not math.isfinite(s_init):
            raise ValueError(f"softmax_scale needs a finite s_init; got s_init={self.s_init!r}")

    @property
    def needs_key_count(self) -> bool:
        """True when the multiplier reads n, the number of keys a query attends."""
        return self.kind in ("logn", "ssmax")

    def init_params(self, *, num_heads: int) -> dict[str, jax.Array]:
        """``{"s": [N] float32}`` for "ssmax" (filled with ``s_init``), else ``{}``."""
        if self.kind != "ssmax":
            return {}
        return {
            "s": jnp.full(
                (as_int(num_heads, "num_heads", "softmax_scale"),), self.s_init, jnp.float32
            )
        }

    def multiplier(
        self, params: Mapping[str, jax.Array], *, positions: jax.Array, n: jax.Array | None
    ) -> jax.Array:
        """The per-query multipliers for `scale_queries`.

        Args:
          params: from `init_params` (SSMax's learned ``s``).
          positions: ``[B, T]`` query positions.
          n: ``[B, T]`` keys each query attends; None means causal, ``p + 1``.

        Returns:
          ``[B, T, N]`` float32 for "ssmax", ``[B, T, 1]`` otherwise.
        """
        if n is None:
            n = causal_key_count(positions)
        if self.kind == "logn":
            return logn_multiplier(n)[..., None]
        if self.kind == "ssmax":
            return ssmax_multiplier(n, params["s"])
        if self.kind == "qwen":
            return qwen_logn_multiplier(positions, train_length=self.train_length)[..., None]
        return llama4_multiplier(
            positions, floor_scale=self.floor_scale, attn_scale=self.attn_scale
        )[..., None]


def make_softmax_scale(spec: SoftmaxScale | str | Mapping[str, Any] | None) -> SoftmaxScale | None:
    """A `SoftmaxScale` from a kind name, a dict of settings (``{"kind": ..., ...}``) or None.

    Example:
        >>> make_softmax_scale("ssmax").s_init
        1.0
        >>> make_softmax_scale(None) is None
        True

    Raises:
      ValueError: an unknown kind or setting, or invalid settings.
    """
    if spec is None or isinstance(spec, SoftmaxScale):
        return spec
    if isinstance(spec, str):
        return SoftmaxScale(kind=spec)
    if isinstance(spec, Mapping):
        settings = dict(spec)
        if "kind" not in settings:
            raise ValueError(
                f"softmax_scale dict needs a 'kind' (one of {list(SOFTMAX_SCALES)}); got {spec!r}"
            )
        fields = {f.name for f in dataclasses.fields(SoftmaxScale)}
        unknown = sorted(set(settings) - fields)
        if unknown:
            raise ValueError(
                f"softmax_scale: unknown setting(s) {unknown}; valid: {sorted(fields)}"
            )
        return SoftmaxScale(**settings)
    raise ValueError(
        "softmax_scale must be None, a kind name, a dict with 'kind', or a SoftmaxScale; "
        f"got {spec!r}"
    )
