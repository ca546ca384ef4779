"""RoPE angle numerics: m * theta modulo 2 pi in fixed point, and the cos/sin table.

`apply_rope` needs ``cos(m * theta_i)`` and ``sin(m * theta_i)`` for every position
m and frequency theta_i. A plain float32 product ``m * theta`` loses up to 0.06 rad
at m = 2^20; `angles` reduces the angle modulo 2 pi with exact integer arithmetic
on 32-bit fixed-point turns instead (~1e-6 rad). `cos_sin_table` is the table
`apply_rope` uses: on CPU it is computed once into a buffer from the
single-precision polynomials of `cos_sin_polynomial`; elsewhere it is
``jnp.cos``/``jnp.sin`` of the same angles (`cos_sin`), fused into the rotation.

Shape legend: B batch, T query length, R rotary dim; positions are ``[T]`` or
``[B, T]``, frequencies ``[R/2]`` (or ``[B, R/2]``, one set a row: dynamic NTK and
LongRoPE), tables ``[(B,) T, 1, R/2]`` (the 1 broadcasts over the heads N).

Example:
    >>> import jax.numpy as jnp
    >>> cos, sin = cos_sin_table(jnp.arange(3), jnp.array([1.0, 0.5]), 1.0)
    >>> cos.shape, sin.dtype
    ((3, 1, 2), dtype('float32'))

References: Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position
Embedding" (arXiv 2104.09864); Moshier 1989, "Methods and Programs for
Mathematical Functions" (Cephes sinf.c / cosf.c); Cody and Waite 1980, "Software
Manual for the Elementary Functions" (argument reduction).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "angles",
    "cos_sin",
    "cos_sin_polynomial",
    "cos_sin_table",
]

_TWO_POW_32 = 4294967296.0
# 2^32 / (2 pi) split into float32 pieces: _K1 and _K2 carry 12 significant bits each,
# so products with a 12-bit half of a float32 are exact.
_K = _TWO_POW_32 / (2 * math.pi)


def _split_constant(value: float, bits: int = 12) -> tuple[float, float]:
    exponent = math.frexp(value)[1]
    unit = 2.0 ** (exponent - bits)
    hi = math.floor(value / unit) * unit
    return hi, value - hi


_K1, _REST = _split_constant(_K)
_K2, _REST = _split_constant(_REST)
_K3 = float(np.float32(_REST))


def _mod_2_32_to_uint32(t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Exact float32 t -> (floor(t) mod 2^32 as uint32, t - floor(t) in [0, 1))."""
    whole = jnp.floor(t)
    frac = t - whole  # exact
    whole = whole - _TWO_POW_32 * jnp.floor(whole / _TWO_POW_32)  # exact, in [0, 2^32)
    hi = jnp.floor(whole / 65536.0)
    lo = whole - hi * 65536.0
    word = (hi.astype(jnp.uint32) << 16) | lo.astype(jnp.uint32)
    return word, frac


def _turns_fixed_point(inv_freq: jax.Array) -> tuple[jax.Array, jax.Array]:
    """theta / (2 pi) as 32-bit fixed-point turns: (uint32 word, float32 remainder in units).

    theta * 2^32 / (2 pi) = word + rem (mod 2^32) with |rem| <= 1/2 unit, computed in
    float32 from exact partial products (theta split into two 12-bit halves by masking).
    """
    theta = inv_freq.astype(jnp.float32)
    bits = jax.lax.bitcast_convert_type(theta, jnp.uint32)
    hi = jax.lax.bitcast_convert_type(bits & jnp.uint32(0xFFFFF000), jnp.float32)
    lo = theta - hi  # exact; at most 12 significant bits
    terms = (hi * _K1, hi * _K2, lo * _K1, lo * _K2)  # each exact in float32
    word = jnp.zeros(theta.shape, jnp.uint32)
    frac = theta * jnp.float32(_K3)  # small term (< 2^7 units), rounding ~1e-5 units
    for term in terms:
        w, f = _mod_2_32_to_uint32(term)
        word = word + w
        frac = frac + f
    whole, rem = _mod_2_32_to_uint32(frac + 0.5)
    return word + whole, rem - 0.5


def _turns_fixed_point_np(inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """As `_turns_fixed_point`, from float64 NumPy frequencies (no float32 rounding of theta)."""
    scaled = np.asarray(inv_freq, np.float64) * _K
    whole = np.floor(scaled + 0.5)
    rem = scaled - whole
    word = np.mod(whole, _TWO_POW_32).astype(np.uint64).astype(np.uint32)
    return jnp.asarray(word), jnp.asarray(rem, jnp.float32)


def angles(positions: jax.Array, inv_freq: jax.Array | np.ndarray) -> jax.Array:
    """m * theta reduced modulo 2 pi, in float32.

    Integer positions use exact modular arithmetic on 32-bit fixed-point turns, so the
    phase error against float64 m * theta stays ~1e-6 rad at |m| = 2^20 (a plain float32
    product is off by up to 0.06 rad there). Float positions add their fractional part
    as a plain float32 product.

    Args:
      positions: positions m of any shape ``[...]`` (integer, or float).
      inv_freq: ``[R/2]`` frequencies theta; float32, or a float64 NumPy array,
        which is then used without float32 rounding. ``[B, R/2]`` (one set a row)
        needs positions ``[T]`` or ``[B, T]``.

    Returns:
      ``[..., R/2]`` float32 angles (``[B, T, R/2]`` for ``[B, R/2]`` frequencies),
      equal to m * theta modulo 2 pi, within [-1.5 pi, 1.5 pi].

    Example:
        >>> import jax.numpy as jnp
        >>> angles(jnp.array([1, 4]), jnp.array([1.0])).round(4)  # 4 - 2 pi
        Array([[ 1.    ],
               [-2.2832]], dtype=float32)
    """
    positions = jnp.asarray(positions)
    if isinstance(inv_freq, np.ndarray) and inv_freq.dtype == np.float64:
        word, rem = _turns_fixed_point_np(inv_freq)
    else:
        word, rem = _turns_fixed_point(jnp.asarray(inv_freq))
    theta = inv_freq
    if np.ndim(inv_freq) == 2:  # [B, R/2]: one set a row, broadcast over the T axis
        word, rem = word[:, None, :], rem[:, None, :]
        theta = jnp.asarray(inv_freq, jnp.float32)[:, None, :]
    if jnp.issubdtype(positions.dtype, jnp.integer):
        whole = positions.astype(jnp.int32)
        part = None
    else:
        pos = positions.astype(jnp.float32)
        whole_f = jnp.floor(pos)
        part = pos - whole_f
        whole = whole_f.astype(jnp.int32)
    m = whole[..., None]
    phase = jax.lax.bitcast_convert_type(m, jnp.uint32) * word  # (m * word) mod 2^32
    # Read as signed, the phase is in [-2^31, 2^31): the same angle modulo 2 pi, half the
    # float32 rounding of [0, 2^32), and |angle| <= 1.5 pi with the remainder term.
    phase = jax.lax.bitcast_convert_type(phase, jnp.int32)
    turns = phase.astype(jnp.float32) + m.astype(jnp.float32) * rem  # in units of 2^-32 turn
    angle = turns * jnp.float32(2 * math.pi / _TWO_POW_32)
    if part is not None:
        angle = angle + part[..., None] * jnp.asarray(theta, jnp.float32)
    return angle


def cos_sin(
    positions: jax.Array,
    inv_freq: jax.Array | np.ndarray,
    attention_factor: float | jax.Array,
    *,
    polynomial: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """cos and sin of m * theta, times the attention factor.

    Args:
      positions: ``[T]`` or ``[B, T]`` positions m (integer, or float).
      inv_freq: ``[R/2]`` or ``[B, R/2]`` frequencies theta (see `angles`).
      attention_factor: multiplies cos and sin (float or scalar array).
      polynomial: from `cos_sin_polynomial` instead of ``jnp.cos``/``jnp.sin``.

    Returns:
      ``(cos, sin)``, each ``[(B,) T, 1, R/2]`` float32.

    Example:
        >>> import jax.numpy as jnp
        >>> cos, sin = cos_sin(jnp.arange(2), jnp.array([1.0]), 2.0)
        >>> cos[:, 0, 0].round(4), sin[:, 0, 0].round(4)
        (Array([2.    , 1.0806], dtype=float32), Array([0.    , 1.6829], dtype=float32))
    """
    angle = angles(positions, inv_freq)[..., None, :]
    cos, sin = cos_sin_polynomial(angle) if polynomial else (jnp.cos(angle), jnp.sin(angle))
    factor = jnp.asarray(attention_factor, jnp.float32)
    return cos * factor, sin * factor


# pi / 2 in three float32 pieces; the first has 8 significant bits, so q * _PIO2_1 is
# exact for the quadrant counts q of reduced angles (Cody and Waite; Cephes' sinf).
_PIO2_1 = 1.5703125
_PIO2_2 = 4.837512969970703125e-4
_PIO2_3 = 7.54978995489188216e-8


def cos_sin_polynomial(angle: jax.Array) -> tuple[jax.Array, jax.Array]:
    """cos and sin of float32 angles with |angle| < 2^10, in elementwise ops only.

    The angle is reduced to r in [-pi/4, pi/4] by its nearest multiple q of pi/2, and
    cos r, sin r are Cephes' single-precision minimax polynomials (Moshier 1989,
    "Methods and Programs for Mathematical Functions", sinf.c / cosf.c); the quadrant
    q mod 4 swaps and negates them. Max error about 1e-7 (tests/test_rope.py checks
    it against float64). XLA:CPU's own sin and cos take ~5 ns an element, which made
    the cos/sin table cost as much as one elementwise pass over a bfloat16 x; this
    vectorizes.

    Args:
      angle: float32 angles of any shape ``[...]``, ``|angle| < 2^10``.

    Returns:
      ``(cos, sin)``, each ``[...]`` float32.

    Example:
        >>> import jax.numpy as jnp
        >>> angle = jnp.linspace(-1000.0, 1000.0, 10001)
        >>> cos, sin = cos_sin_polynomial(angle)
        >>> float(jnp.abs(cos - jnp.cos(angle)).max()) < 1e-6
        True
    """
    q = jnp.round(angle * jnp.float32(2 / math.pi))
    r = ((angle - q * jnp.float32(_PIO2_1)) - q * jnp.float32(_PIO2_2)) - q * jnp.float32(_PIO2_3)
    z = r * r
    sin_r = r + r * z * (
        jnp.float32(-1.6666654611e-1)
        + z * (jnp.float32(8.3321608736e-3) + z * jnp.float32(-1.9515295891e-4))
    )
    cos_r = (
        1.0
        - 0.5 * z
        + z
        * z
        * (
            jnp.float32(4.166664568298827e-2)
            + z * (jnp.float32(-1.388731625493765e-3) + z * jnp.float32(2.443315711809948e-5))
        )
    )
    quadrant = q.astype(jnp.int32) & 3  # two's complement: -1 -> 3
    swap = (quadrant & 1) == 1
    sin_abs, cos_abs = jnp.where(swap, cos_r, sin_r), jnp.where(swap, sin_r, cos_r)
    sin = jnp.where((quadrant & 2) == 2, -sin_abs, sin_abs)
    cos = jnp.where(((quadrant + 1) & 2) == 2, -cos_abs, cos_abs)
    return cos, sin


def cos_sin_table(
    positions: jax.Array,
    inv_freq: jax.Array | np.ndarray,
    attention_factor: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """The cos/sin table of `apply_rope`: `cos_sin`, computed once into a buffer on CPU.

    XLA:CPU counts sin and cos as cheap and fuses them, with the whole angle
    computation, into the [B, T, N, R] rotation loop, so every table entry is
    recomputed 2·B·N times (forward and backward): ~3x to 12x the time of an
    elementwise op on x. ``optimization_barrier`` is expanded before fusion on CPU,
    and a ``cond`` becomes a select under ``vmap``; a dot is never fused into an
    elementwise loop, so a product with the identity (exact in float32 at HIGHEST
    precision: one term x·1, the others x·0) makes XLA write the table to a buffer
    first. Other platforms compute the table as is: on GPU and TPU the fused
    recomputation is what they do best.

    On CPU the table comes from `cos_sin_polynomial` (within one float32 ulp of
    ``jnp.cos``/``jnp.sin``); elsewhere it is ``cos_sin(positions, inv_freq,
    attention_factor)`` exactly.

    Args:
      positions: ``[T]`` or ``[B, T]`` positions m (integer, or float).
      inv_freq: ``[R/2]`` or ``[B, R/2]`` frequencies theta (see `angles`).
      attention_factor: multiplies cos and sin (float or scalar array).

    Returns:
      ``(cos, sin)``, each ``[(B,) T, 1, R/2]`` float32.
    """

    def materialized(p):
        cos, sin = cos_sin(p, inv_freq, attention_factor, polynomial=True)
        eye = jnp.eye(cos.shape[-1], dtype=jnp.float32)
        hi = jax.lax.Precision.HIGHEST
        return jnp.matmul(cos, eye, precision=hi), jnp.matmul(sin, eye, precision=hi)

    return jax.lax.platform_dependent(
        positions,
        cpu=materialized,
        default=lambda p: cos_sin(p, inv_freq, attention_factor),
    )
