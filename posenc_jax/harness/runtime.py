"""Process-wide settings of the experiment runner.

`keep_freed_memory` has the C allocator keep the blocks XLA:CPU frees, instead of
handing them back to the operating system after every compiled call. ``posenc run``
applies it (``--system-malloc`` leaves the allocator alone); a training loop of
one's own can call it once at start-up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

__all__ = ["DEFAULT_MAX_BLOCK", "keep_freed_memory"]

# mallopt parameters (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

DEFAULT_MAX_BLOCK = 1 << 30  # 1 GiB


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def keep_freed_memory(*, max_block: int = DEFAULT_MAX_BLOCK) -> bool:
    """Keeps freed heap blocks of up to ``max_block`` bytes for reuse (glibc only).

    XLA:CPU allocates the scratch buffer of a compiled program (and its outputs)
    afresh on every call. glibc serves a block above its mmap threshold, which
    adapts up to 32 MiB, with a fresh ``mmap`` and unmaps it on ``free``, so each
    call of a program whose scratch exceeds 32 MiB pays a page fault, and the
    zeroing of a page, for every 4 KiB it touches. Measured on a 2-core machine:
    the two-seed train step of the language model of ``configs/quick.yaml`` with
    Shaw's encodings (a 36 MB scratch buffer; NoPE's is 31 MB, under the limit)
    took 29.6 ms with glibc's defaults and 20.4 ms with this setting; NoPE's
    17.4 ms and 17.7 ms (``python benchmarks/performance.py --sections train``).
    This function sets glibc's mmap and trim thresholds to ``max_block``: blocks
    up to that size come from the heap and, once freed, stay there for the next
    call. Memory the process freed is not returned to the system while it runs
    (its peak use is unchanged).

    Args:
      max_block: bytes; larger blocks are still mapped and unmapped each time.

    Returns:
      True if the setting was applied; False on other C libraries (macOS,
      Windows, musl), where nothing is changed.

    Raises:
      ValueError: ``max_block`` is not a positive int below 2**31.
    """
    if isinstance(max_block, bool) or not isinstance(max_block, int) or not 0 < max_block < 2**31:
        raise ValueError(
            f"keep_freed_memory: max_block must be an int in [1, 2**31); got {max_block!r}"
        )
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, max_block) == 1
    return bool(ok and libc.mallopt(_M_TRIM_THRESHOLD, max_block) == 1)
