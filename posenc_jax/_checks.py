"""Argument checks shared by every pure-function module, and the sign convention.

Every check raises a ``ValueError`` that names the function, the argument and
what it must be, so a wrong call says how to fix it.

**Relative distance** is ``key position - query position`` everywhere in the
library (T5's ``relative_position = memory_position - query_position``): a key
to the left of its query (the past, in a causal model) has a negative distance.
`relative_distance` is the one function that computes it; a scheme whose paper
writes ``i - j`` (query minus key, e.g. KERPLE and FIRE) negates it.

Shape legend: B batch, T query length, S key length.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "as_int",
    "check_at_run_time",
    "check_choice",
    "check_heads",
    "check_positions",
    "finite_float",
    "nonnegative_float",
    "per_head",
    "positive_float",
    "relative_distance",
]


def as_int(value: Any, name: str, fn: str) -> int:
    """``value`` as a Python int; bools and non-integers are refused.

    Example:
        >>> as_int(3, "dim", "sinusoidal")
        3
    """
    if isinstance(value, bool):
        raise ValueError(f"{fn} needs an int {name}; got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{fn} needs an int {name}; got {value!r}") from None


def positive_float(value: Any, name: str, fn: str) -> float:
    """``value`` as a finite float > 0.

    Example:
        >>> positive_float(2, "base", "rope")
        2.0
    """
    out = _number(value, name, fn)
    if not (out > 0 and math.isfinite(out)):
        raise ValueError(f"{fn} needs a finite {name} > 0; got {name}={value!r}")
    return out


def nonnegative_float(value: Any, name: str, fn: str) -> float:
    """``value`` as a finite float >= 0.

    Raises:
      ValueError: naming ``fn`` and ``name``, for a bool, a non-number, a negative
        or a non-finite value.

    Example:
        >>> nonnegative_float(0, "attn_scale", "llama4_multiplier")
        0.0
    """
    out = _number(value, name, fn)
    if not (out >= 0 and math.isfinite(out)):
        raise ValueError(f"{fn} needs a finite {name} >= 0; got {name}={value!r}")
    return out


def finite_float(value: Any, name: str, fn: str) -> float:
    """``value`` as a finite float.

    Raises:
      ValueError: naming ``fn`` and ``name``, for a bool, a non-number or inf/nan.

    Example:
        >>> finite_float(-2, "bias_init", "fox")
        -2.0
    """
    out = _number(value, name, fn)
    if not math.isfinite(out):
        raise ValueError(f"{fn} needs a finite {name}; got {name}={value!r}")
    return out


def _number(value: Any, name: str, fn: str) -> float:
    """``value`` as a float; a bool or a non-number is an error naming ``fn`` and ``name``."""
    if isinstance(value, bool):
        raise ValueError(f"{fn} needs a number {name}; got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{fn} needs a number {name}; got {value!r}") from None


def check_choice(value: Any, name: str, choices: Sequence[str], fn: str) -> str:
    """``value`` when it is one of ``choices``; otherwise an error listing them.

    Example:
        >>> check_choice("half", "layout", ("half", "interleaved"), "rope")
        'half'
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{fn}: {name} must be one of {list(choices)}; got {value!r}")
    return value


def check_positions(positions: Any, name: str, fn: str, *, integer: bool = False) -> jax.Array:
    """Positions of shape ``[T]`` or ``[B, T]`` (integer dtype when ``integer``)."""
    positions = jnp.asarray(positions)
    if positions.ndim not in (1, 2):
        raise ValueError(f"{fn} needs {name} of shape [T] or [B, T]; got shape {positions.shape}")
    if integer and not jnp.issubdtype(positions.dtype, jnp.integer):
        raise ValueError(f"{fn} needs integer {name}; got dtype {positions.dtype}")
    return positions


def relative_distance(q_positions: Any, k_positions: Any, fn: str) -> jax.Array:
    """Key minus query: ``[T]`` / ``[B, T]`` with ``[S]`` / ``[B, S]`` -> ``[..., T, S]``.

    Integer positions subtract exactly in int32 (the result is int32); any float
    position makes the result float32.

    Example:
        >>> relative_distance(jnp.arange(3), jnp.arange(3), "demo").tolist()
        [[0, 1, 2], [-1, 0, 1], [-2, -1, 0]]
    """
    q = check_positions(q_positions, "q_positions", fn)
    k = check_positions(k_positions, "k_positions", fn)
    if jnp.issubdtype(q.dtype, jnp.integer) and jnp.issubdtype(k.dtype, jnp.integer):
        dtype = jnp.int32
    else:
        dtype = jnp.float32
    return k.astype(dtype)[..., None, :] - q.astype(dtype)[..., :, None]  # [..., T, S]


def per_head(value: Any, name: str, fn: str) -> jax.Array:
    """A float32 vector of one value per head, ``[N]``."""
    value = jnp.asarray(value)
    if value.ndim != 1:
        raise ValueError(f"{fn} needs {name} of shape [N] (one value per head); got {value.shape}")
    return value.astype(jnp.float32)


def check_heads(num_heads: Any, num_kv_heads: Any, fn: str) -> tuple[int, int]:
    """Query and key/value head counts: both >= 1, and K divides N (grouped-query attention).

    Example:
        >>> check_heads(8, 2, "attention")
        (8, 2)
    """
    n = as_int(num_heads, "num_heads", fn)
    k = as_int(num_kv_heads, "num_kv_heads", fn)
    if n < 1 or k < 1 or n % k:
        raise ValueError(
            f"{fn} needs num_heads >= 1 and num_kv_heads >= 1, num_heads a multiple of "
            f"num_kv_heads (grouped-query attention); got num_heads={n}, num_kv_heads={k}"
        )
    return n, k


def check_at_run_time(
    check: Callable[..., None],
    *operands: Any,
    when: Callable[..., Any] | None = None,
) -> None:
    """Runs ``check(*operands)``, a host function that raises ValueError, now or at run time.

    Concrete operands (an eager call): ``check`` runs now and its ValueError
    propagates. Traced operands (under ``jax.jit``, ``vmap``, ``grad``, a scan):
    ``check`` runs on the host when the program runs, through a host callback
    (``jax.debug.callback``), and jax then fails with a ``jax.errors.JaxRuntimeError``
    (a RuntimeError) whose message contains the ValueError text (tested on CPU),
    possibly when the result is first used (asynchronous dispatch).
    ``jax.experimental.checkify`` is not used: under ``jax.jit`` its checks fail to
    trace unless every caller wraps the function in ``checkify.checkify``.

    Pass small operands (reduce on the device first, e.g. min and max positions):
    they travel to the host.

    Args:
      check: called with the operands as arrays; raises ValueError when they are bad.
      *operands: arrays (or scalars) that ``check`` reads.
      when: optional function of the operands giving a boolean scalar, True whenever
        ``check`` may raise (it may also be True when ``check`` passes). Traced, the
        callback then runs only when it is True (``jax.lax.cond``), saving a
        device-host round trip on every good call. ``check`` still decides, so the
        result stays right where ``cond`` runs both branches (under ``vmap``).
        Give it only when a device computation can be that conservative (exact
        integer comparisons); None: the callback runs on every call.

    Example:
        >>> def positive(x):
        ...     if int(x) <= 0:
        ...         raise ValueError(f"demo needs x > 0; got x={int(x)}")
        >>> check_at_run_time(positive, jnp.int32(3), when=lambda x: x <= 0)
        >>> check_at_run_time(positive, jnp.int32(-1))
        Traceback (most recent call last):
        ValueError: demo needs x > 0; got x=-1
        >>> jax.jit(lambda x: check_at_run_time(positive, x, when=lambda x: x <= 0))(3)
    """
    if not any(isinstance(v, jax.core.Tracer) for v in operands):
        check(*operands)
    elif when is None:
        jax.debug.callback(check, *operands)
    else:
        jax.lax.cond(
            when(*operands),
            lambda *a: jax.debug.callback(check, *a),
            lambda *a: None,
            *operands,
        )
