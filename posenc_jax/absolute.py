"""Absolute position encodings added to the input embeddings.

Two schemes, both functions of explicit positions:

- `sinusoidal`: the fixed encoding of Vaswani et al. 2017, defined for any
  position (no maximum length).
- `learned_lookup` / `init_learned_table`: a learned table of ``L`` rows
  (BERT, GPT-2), defined only for positions ``0 .. L-1``.

Shape legend: B batch, T length, D model dim, L table length.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from posenc_jax._checks import as_int, check_at_run_time, positive_float

__all__ = [
    "OUT_OF_RANGE_POLICIES",
    "check_learned_positions",
    "init_learned_table",
    "learned_lookup",
    "sinusoidal",
    "sinusoidal_frequencies",
]

OUT_OF_RANGE_POLICIES = ("error", "clip")


def sinusoidal_frequencies(dim: int, *, base: float = 10000.0) -> np.ndarray:
    """The sinusoids' frequencies ``base^(-2i/dim)``, ``i = 0 .. dim/2 - 1``, as host constants.

    Computed in float64 on the host: `sinusoidal` rounds them once to float32;
    `posenc_jax.transformer_xl.xl_relative_logits` passes them to the exact angle
    reduction (`posenc_jax.rope.numerics.angles`) as they are.

    Args:
      dim: encoding size D; even and >= 2.
      base: wavelength base (10000 in the paper); finite and > 0.

    Returns:
      float64 NumPy array ``[dim/2]``, from 1 down to ``base^(-(dim-2)/dim)``.

    Raises:
      ValueError: ``dim`` odd or < 2, or ``base`` not a finite number > 0.

    Example:
      >>> sinusoidal_frequencies(4, base=100.0).tolist()
      [1.0, 0.1]

    References: Vaswani et al. 2017, "Attention Is All You Need", section 3.5
    (arXiv 1706.03762).
    """
    dim = as_int(dim, "dim", "sinusoidal")
    if dim < 2 or dim % 2:
        raise ValueError(f"sinusoidal needs an even dim >= 2; got dim={dim}")
    base = positive_float(base, "base", "sinusoidal")
    return np.power(base, -np.arange(0, dim, 2, dtype=np.float64) / dim)  # [dim/2]


def sinusoidal(
    positions: jax.Array,
    dim: int,
    *,
    base: float = 10000.0,
    dtype: Any = jnp.float32,
) -> jax.Array:
    """Sinusoidal position encoding with interleaved sin/cos channels.

    ``PE(p, 2i) = sin(p / base^(2i/dim))`` and ``PE(p, 2i+1) = cos(p / base^(2i/dim))``
    for ``i = 0 .. dim/2 - 1``. Angles are computed in float32 whatever ``dtype``;
    the result is cast to ``dtype`` at the end.

    Args:
      positions: integer or float positions of any shape ``[...]`` (e.g. ``[T]``
        or ``[B, T]``); any value, there is no maximum length.
      dim: encoding size D; even and >= 2.
      base: wavelength base (10000 in the paper); > 0.
      dtype: output dtype.

    Returns:
      ``[..., dim]`` array of ``dtype``.

    Raises:
      ValueError: ``dim`` odd or < 2, or ``base`` <= 0.

    Example:
      >>> pe = sinusoidal(jnp.arange(4), 8)
      >>> pe.shape
      (4, 8)
      >>> [float(v) for v in pe[0, :2]]
      [0.0, 1.0]

    References: Vaswani et al. 2017, "Attention Is All You Need", section 3.5
    (arXiv 1706.03762).
    """
    # Frequencies as host constants in float64, rounded once to float32: [dim/2].
    inv_freq = sinusoidal_frequencies(dim, base=base).astype(np.float32)
    angles = jnp.asarray(positions).astype(jnp.float32)[..., None] * inv_freq  # [..., dim/2]
    pe = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)  # [..., dim/2, 2]
    return pe.reshape(*angles.shape[:-1], dim).astype(dtype)  # [..., dim]


def init_learned_table(
    key: jax.Array,
    max_length: int,
    dim: int,
    *,
    stddev: float = 0.02,
    dtype: Any = jnp.float32,
) -> jax.Array:
    """Initial table of learned position embeddings, as in BERT and GPT-2.

    Entries are drawn from a normal distribution of standard deviation ``stddev``
    truncated at two standard deviations (BERT's ``truncated_normal_initializer``;
    GPT-2 uses the untruncated normal with the same 0.02).

    Args:
      key: PRNG key.
      max_length: number of rows L (positions 0 .. L-1); >= 1.
      dim: embedding size D; >= 1.
      stddev: standard deviation before truncation; >= 0.
      dtype: output dtype.

    Returns:
      ``[max_length, dim]`` array of ``dtype``.

    Raises:
      ValueError: ``max_length`` < 1, ``dim`` < 1 or ``stddev`` < 0.

    Example:
      >>> init_learned_table(jax.random.key(0), 512, 64).shape
      (512, 64)

    References: Devlin et al. 2019, "BERT" (arXiv 1810.04805); Radford et al. 2019,
    "Language Models are Unsupervised Multitask Learners" (GPT-2).
    """
    max_length = as_int(max_length, "max_length", "init_learned_table")
    dim = as_int(dim, "dim", "init_learned_table")
    if max_length < 1:
        raise ValueError(f"init_learned_table needs max_length >= 1; got max_length={max_length}")
    if dim < 1:
        raise ValueError(f"init_learned_table needs dim >= 1; got dim={dim}")
    stddev = float(stddev)
    if not stddev >= 0:
        raise ValueError(f"init_learned_table needs stddev >= 0; got stddev={stddev}")
    table = jax.random.truncated_normal(key, -2.0, 2.0, (max_length, dim), jnp.float32)
    return (stddev * table).astype(dtype)


def _out_of_range_message(lo: int, hi: int, length: int, fn: str) -> str:
    head = (
        f"{fn}: positions must lie in [0, {length - 1}] for a table of length "
        f"{length}; got min position {lo}, max position {hi}."
    )
    if lo < 0:
        fix = " Negative positions have no row: shift the positions to start at 0"
    else:
        fix = f" Use a table with at least {hi + 1} rows"
    return head + fix + ", or pass out_of_range='clip' to clamp positions to the table."


def _check_in_range(lo: Any, hi: Any, *, length: int, fn: str) -> None:
    lo, hi = int(lo), int(hi)
    if lo < 0 or hi >= length:
        raise ValueError(_out_of_range_message(lo, hi, length, fn))


def check_learned_positions(*positions: jax.Array, length: int, fn: str = "learned_lookup") -> None:
    """Raises when a position has no row in a table of ``length`` rows (``[0, length)``).

    The "error" policy of `learned_lookup`, for one or more position arrays at once
    (TUPE checks its query and key positions in one go). With concrete positions the
    ValueError is raised now. Traced positions (under ``jax.jit``, ``vmap``,
    ``grad``) are checked when the program runs, by a host callback taken only when
    a position is out of range (`posenc_jax._checks.check_at_run_time`): the
    computation then fails with a ``jax.errors.JaxRuntimeError`` carrying the
    message, possibly when the result is first used (asynchronous dispatch).

    Args:
      *positions: integer position arrays of any shape (empty ones are skipped).
      length: rows of the table, L.
      fn: the function named in the message.

    Raises:
      ValueError: (concrete positions) a position < 0 or >= ``length``.

    Example:
      >>> check_learned_positions(jnp.arange(4), jnp.array([0, 2]), length=4)
    """
    arrays = [jnp.asarray(p) for p in positions if jnp.size(p) > 0]
    if not arrays:
        return
    lo = functools.reduce(jnp.minimum, [jnp.min(p) for p in arrays])
    hi = functools.reduce(jnp.maximum, [jnp.max(p) for p in arrays])
    check = functools.partial(_check_in_range, length=length, fn=fn)
    check_at_run_time(check, lo, hi, when=lambda lo, hi: (lo < 0) | (hi >= length))


def learned_lookup(
    table: jax.Array,
    positions: jax.Array,
    *,
    out_of_range: str = "error",
) -> jax.Array:
    """Looks up learned position embeddings, never returning a silent NaN.

    Policies for positions outside ``[0, L-1]`` (negative positions included):

    - ``"error"`` (default): with concrete positions, raises ValueError at call
      time. When positions are traced (under ``jax.jit``, ``vmap``, ``grad``), the
      range is checked at run time by a host callback (``jax.debug.callback``,
      taken only when a position is out of range) that raises; on CPU (tested,
      jax 0.10) the computation then fails with ``jax.errors.JaxRuntimeError`` (a
      RuntimeError) whose message contains the ValueError text (other backends
      untested); see `check_learned_positions`. With asynchronous dispatch the
      error may surface when the result is first used (e.g. ``block_until_ready``).
      The gather itself uses ``mode="clip"``, so no NaN is ever produced.
    - ``"clip"``: positions are clamped to ``[0, L-1]`` (positions past the end
      reuse the last row).

    Args:
      table: ``[L, D]`` embedding table.
      positions: integer positions ``[...]`` (e.g. ``[T]`` or ``[B, T]``).
      out_of_range: ``"error"`` or ``"clip"``.

    Returns:
      ``[..., D]`` array of ``table.dtype``.

    Raises:
      ValueError: unknown ``out_of_range``, ``table`` not 2-D, non-integer
        positions, or (policy "error", concrete positions) a position out of range.

    Example:
      >>> table = jnp.arange(6.0).reshape(3, 2)
      >>> learned_lookup(table, jnp.array([0, 2])).tolist()
      [[0.0, 1.0], [4.0, 5.0]]
      >>> learned_lookup(table, jnp.array([5]), out_of_range="clip").tolist()
      [[4.0, 5.0]]

    References: Devlin et al. 2019, "BERT" (arXiv 1810.04805); Radford et al. 2019 (GPT-2).
    """
    if out_of_range not in OUT_OF_RANGE_POLICIES:
        raise ValueError(
            f"learned_lookup: out_of_range must be one of {list(OUT_OF_RANGE_POLICIES)}; "
            f"got {out_of_range!r}"
        )
    table = jnp.asarray(table)
    if table.ndim != 2:
        raise ValueError(f"learned_lookup needs table of shape [L, D]; got shape {table.shape}")
    positions = jnp.asarray(positions)
    if not jnp.issubdtype(positions.dtype, jnp.integer):
        raise ValueError(
            f"learned_lookup needs integer positions; got positions of dtype {positions.dtype}"
        )
    length = table.shape[0]
    if out_of_range == "error":
        check_learned_positions(positions, length=length)
    index = jnp.clip(positions, 0, length - 1)  # [...]
    return jnp.take(table, index, axis=0, mode="clip")  # [..., D]
