"""RoPE rotation of q/k features and the two feature layouts.

`apply_rope` rotates pair i of a token at position m by ``m * theta_i``, in the
"half" layout (GPT-NeoX, Hugging Face Llama: pairs (i, i + R/2)) or the
"interleaved" layout (RoFormer, GPT-J, Meta's Llama: pairs (2i, 2i + 1)), with
partial rotary dims; `rotate` is the same rotation given the cos/sin table.
`convert_rope_layout` permutes q/k projection weights between the two layouts so
that attention scores are unchanged.

Shape legend: B batch, T query length, N heads, H head dim, D model dim,
R rotary dim (``int(H * rotary_fraction)``).

Example:
    >>> import jax.numpy as jnp
    >>> from posenc_jax.rope.frequencies import rope_frequencies
    >>> inv_freq, factor = rope_frequencies(8)
    >>> q = jnp.ones((1, 4, 2, 8))  # [B, T, N, H]
    >>> apply_rope(q, jnp.arange(4), inv_freq=inv_freq, attention_factor=factor).shape
    (1, 4, 2, 8)

References: Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position
Embedding" (arXiv 2104.09864); Black et al. 2022, "GPT-NeoX-20B" (arXiv 2204.06745).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._checks import as_int, check_choice
from posenc_jax.rope.numerics import cos_sin_table

__all__ = [
    "LAYOUTS",
    "apply_rope",
    "convert_rope_layout",
    "rotate",
]

LAYOUTS: tuple[str, ...] = ("half", "interleaved")
"""Feature layouts: "half" pairs dims (i, i + R/2); "interleaved" pairs (2i, 2i + 1)."""


def rotate(x: jax.Array, cos: jax.Array, sin: jax.Array, *, layout: str) -> jax.Array:
    """`apply_rope`'s rotation with the cos/sin table given (no checks).

    The halves are written with pad and select rather than concatenate: XLA:CPU
    vectorizes a select of padded operands ~1.5x to 2x faster than a concatenate
    (`benchmarks/performance.py`); on GPU and TPU both fuse into one loop.

    Args:
      x: ``[..., T, N, H]``.
      cos: ``[(B,) T, 1, R/2]`` float32, e.g. from
        `posenc_jax.rope.numerics.cos_sin_table`; R <= H.
      sin: as ``cos``.
      layout: "half" or "interleaved".

    Returns:
      ``[..., T, N, H]`` with x's dtype; dims R..H-1 pass through.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[[1.0, 0.0, 5.0]]])  # [T=1, N=1, H=3], R=2
        >>> rotate(x, jnp.zeros((1, 1, 1)), jnp.ones((1, 1, 1)), layout="half")
        Array([[[0., 1., 5.]]], dtype=float32)
    """
    half = cos.shape[-1]
    dim, head_dim = 2 * half, x.shape[-1]
    xf = x.astype(jnp.float32)
    if layout == "half":
        a, b = xf[..., :half], xf[..., half:dim]
        first = _pad_last(a * cos - b * sin, 0, half)
        second = _pad_last(b * cos + a * sin, half, 0)
        out = jnp.where(jnp.arange(dim) < half, first, second)  # [..., R]
    else:
        pairs = xf[..., :dim].reshape(*xf.shape[:-1], half, 2)  # [..., R/2, 2]
        a, b = pairs[..., 0], pairs[..., 1]
        first, second = a * cos - b * sin, b * cos + a * sin
        if x.dtype.itemsize >= 4:
            pad = _pad_last(first[..., None], 0, 1), _pad_last(second[..., None], 1, 0)
            out = jnp.where(jnp.arange(2) == 0, *pad)
        else:  # XLA:CPU vectorizes a [..., 2] select poorly for 16-bit outputs
            out = jnp.stack([first, second], axis=-1)
        out = out.reshape(*out.shape[:-2], dim)  # [..., R]
    if dim < head_dim:  # partial rotary: the other dims pass through
        feature = jnp.arange(head_dim)
        out = jnp.where(feature < dim, _pad_last(out, 0, head_dim - dim), xf)
    return out.astype(x.dtype)


def _pad_last(v: jax.Array, before: int, after: int) -> jax.Array:
    """Zero-pads the last axis of v by ``before`` and ``after`` entries."""
    return jnp.pad(v, [(0, 0)] * (v.ndim - 1) + [(before, after)])


def _check_rotary_dim(x: jax.Array, inv_freq: jax.Array | np.ndarray) -> None:
    """x is ``[..., T, N, H]`` and inv_freq ``[R/2]`` (or ``[B, R/2]``) with 2 <= R <= H."""
    if x.ndim < 3:
        raise ValueError(f"rope: x must be [..., T, N, H]; got shape {x.shape}")
    if inv_freq.ndim not in (1, 2):
        raise ValueError(f"rope: inv_freq must be [R/2] or [B, R/2]; got shape {inv_freq.shape}")
    half = inv_freq.shape[-1]
    dim = 2 * half
    head_dim = x.shape[-1]
    if dim > head_dim or half == 0:
        raise ValueError(
            f"rope: inv_freq has {half} frequencies, so rotary dim {dim}, which needs "
            f"1 <= R/2 and R <= head dim {head_dim}"
        )
    if inv_freq.ndim == 2:
        batch = inv_freq.shape[0]
        if x.ndim != 4 or batch not in (1, x.shape[0]):
            raise ValueError(
                f"rope: [B, R/2] frequencies (one set a row) need x of shape [B, T, N, H] with "
                f"the same B; got inv_freq {inv_freq.shape}, x {x.shape}"
            )


def _check_positions(x: jax.Array, positions: jax.Array) -> None:
    """positions are ``[T]``, or ``[B, T]`` with B equal to x's batch or 1."""
    if positions.ndim not in (1, 2) or positions.shape[-1] != x.shape[-3]:
        raise ValueError(
            f"rope: positions must be [T] or [B, T] with T = x.shape[-3] = {x.shape[-3]}; "
            f"got positions shape {positions.shape} for x shape {x.shape}"
        )
    if positions.ndim == 2:
        if x.ndim < 4:
            raise ValueError(
                f"rope: [B, T] positions need x with a batch axis [B, T, N, H]; got {x.shape}"
            )
        batch, x_batch = positions.shape[0], x.shape[-4]
        if batch not in (1, x_batch) and x_batch != 1:
            raise ValueError(
                f"rope: positions batch {batch} does not match x batch {x_batch} "
                f"(positions {positions.shape}, x {x.shape})"
            )


def apply_rope(
    x: jax.Array,
    positions: jax.Array,
    *,
    inv_freq: jax.Array,
    attention_factor: float | jax.Array = 1.0,
    layout: str = "half",
) -> jax.Array:
    """Rotates the first R features of each head by position-dependent angles.

    Pair i (frequency theta_i = inv_freq[i]) of a token at position m turns by
    m * theta_i: (a, b) -> (a cos - b sin, b cos + a sin). Layout "half"
    (GPT-NeoX, Hugging Face Llama) pairs dims (i, i + R/2); "interleaved"
    (RoFormer, GPT-J, Meta's Llama) pairs (2i, 2i + 1). Dims R..H-1 pass through
    unchanged (partial rotary). cos and sin are multiplied by
    ``attention_factor`` as Hugging Face does, so q·k logits scale by its square.

    Angles m·theta are reduced modulo 2 pi by exact integer arithmetic on
    32-bit fixed-point turns, so at position 2^20 the phase error against a
    float64 evaluation of m·theta is ~1e-6 rad (a plain float32 product is off
    by up to 0.06 rad there). theta is the given frequency: float32 frequencies
    differ from base^(-2i/R) by float32 rounding, which moves the angle at 2^20
    by up to ~0.03 rad (as in any float32 implementation); pass float64 NumPy
    frequencies to remove that too. Float positions (interpolation) are
    accepted. The rotation runs in float32; the output has x's dtype. On CPU
    the cos/sin table is computed once per call, from single-precision
    polynomials (within one float32 ulp); elsewhere from ``jnp.cos``/``jnp.sin``.

    Args:
      x: ``[..., T, N, H]``, typically q or k ``[B, T, N, H]``.
      positions: ``[T]`` or ``[B, T]`` positions (integer, or float).
      inv_freq: ``[R/2]`` float32 frequencies from `rope_frequencies`; a float64
        NumPy array is also accepted and then used without float32 rounding.
        ``[B, R/2]`` gives each row its own frequencies (dynamic NTK and LongRoPE
        at each row's own length); x is then ``[B, T, N, H]``.
      attention_factor: multiplies cos and sin (float or scalar array).
      layout: "half" or "interleaved".

    Returns:
      ``[..., T, N, H]`` with x's dtype.

    Raises:
      ValueError: bad layout, R > H, or positions that do not match x.

    Example:
        >>> import jax.numpy as jnp
        >>> from posenc_jax.rope import rope_frequencies
        >>> inv_freq, _ = rope_frequencies(4)
        >>> x = jnp.array([[[[1.0, 0.0, 0.0, 0.0]]]])  # [B=1, T=1, N=1, H=4]
        >>> apply_rope(x, jnp.array([1]), inv_freq=inv_freq, layout="interleaved").round(3)
        Array([[[[0.54 , 0.841, 0.   , 0.   ]]]], dtype=float32)

    References: Su et al. 2021, RoFormer (arXiv 2104.09864), eq. (34).
    """
    check_choice(layout, "layout", LAYOUTS, "rope")
    x = jnp.asarray(x)
    positions = jnp.asarray(positions)
    if not (isinstance(inv_freq, np.ndarray) and inv_freq.dtype == np.float64):
        inv_freq = jnp.asarray(inv_freq)  # float64 NumPy stays exact for the angle reduction
    _check_rotary_dim(x, inv_freq)
    _check_positions(x, positions)
    cos, sin = cos_sin_table(positions, inv_freq, attention_factor)  # [(B,) T, 1, R/2]
    return rotate(x, cos, sin, layout=layout)


def _layout_permutation(head_dim: int, dim: int, src: str, dst: str) -> np.ndarray:
    """Index array p with new[..., j] = old[..., p[j]] within one head."""
    perm = np.arange(head_dim)
    if src == dst:
        return perm
    interleaved_to_half = np.concatenate([np.arange(0, dim, 2), np.arange(1, dim, 2)])
    if src == "interleaved":  # half[j] = interleaved[p[j]]
        perm[:dim] = interleaved_to_half
    else:  # interleaved[p^-1 ...]: invert
        perm[:dim] = np.argsort(interleaved_to_half)
    return perm


def convert_rope_layout(
    w: jax.Array,
    *,
    head_dim: int,
    rotary_dim: int | None = None,
    src: str,
    dst: str,
) -> jax.Array:
    """Permutes q/k projection output features between the "interleaved" and "half" layouts.

    Within each head the rotary features are reordered so that a model rotating
    with layout ``dst`` computes exactly the attention scores of the original
    weights rotated with layout ``src``: interleaved -> half maps feature 2i to
    i and 2i + 1 to i + R/2 (Hugging Face's Llama conversion ``permute``); half
    -> interleaved is the inverse. Apply it to both the q and the k projection
    (and their biases); features past the rotary dim are left in place.

    Args:
      w: ``[D, N*H]``, ``[D, N, H]`` or a bias ``[N*H]``: output features last.
      head_dim: H.
      rotary_dim: R (default H), even and <= H.
      src: layout the weights were trained with, "half" or "interleaved".
      dst: layout to convert to.

    Returns:
      w with its last axis (per head) permuted; same shape and dtype.

    Raises:
      ValueError: unknown layout names, odd or too large rotary_dim, or a last
        axis that is not a multiple of head_dim.

    Example:
        >>> import jax.numpy as jnp
        >>> convert_rope_layout(jnp.arange(4), head_dim=4, src="interleaved", dst="half")
        Array([0, 2, 1, 3], dtype=int32)

    References: Su et al. 2021, RoFormer (arXiv 2104.09864); Hugging Face
    transformers ``convert_llama_weights_to_hf.py``.
    """
    check_choice(src, "src", LAYOUTS, "rope")
    check_choice(dst, "dst", LAYOUTS, "rope")
    head_dim = as_int(head_dim, "head_dim", "rope")
    if head_dim < 2:
        raise ValueError(f"rope: head_dim must be an integer >= 2; got head_dim={head_dim!r}")
    dim = head_dim if rotary_dim is None else as_int(rotary_dim, "rotary_dim", "rope")
    if dim < 2 or dim % 2:
        raise ValueError(f"rope: rotary_dim must be an even integer >= 2; got rotary_dim={dim!r}")
    if dim > head_dim:
        raise ValueError(f"rope: rotary_dim={dim} exceeds head_dim={head_dim}")
    w = jnp.asarray(w)
    features = w.shape[-1] if w.ndim else 0
    if features == 0 or features % head_dim:
        raise ValueError(
            f"rope: the last axis of w ({features}) must be a multiple of head_dim={head_dim}; "
            f"got w shape {w.shape}"
        )
    perm = _layout_permutation(int(head_dim), int(dim), src, dst)
    heads = features // head_dim
    index = (np.arange(heads)[:, None] * head_dim + perm[None, :]).reshape(-1)
    return jnp.take(w, jnp.asarray(index), axis=-1, mode="clip")
