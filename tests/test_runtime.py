"""posenc_jax.harness.runtime: the allocator setting `posenc run` applies."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import posenc_jax.harness.runner
import posenc_jax.harness.runtime
from posenc_jax.harness.cli import main
from posenc_jax.harness.runtime import keep_freed_memory

ROOT = Path(__file__).resolve().parent.parent
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.mark.parametrize("max_block", [0, -1, 2**31, 1.5, True, "1G"])
def test_keep_freed_memory_rejects_bad_max_block(max_block):
    with pytest.raises(ValueError, match=r"max_block must be an int in \[1, 2\*\*31\)"):
        keep_freed_memory(max_block=max_block)


# Allocates and frees a block of argv[3] bytes on the main thread or a new one (argv[2]) and
# prints: bytes mapped while the block is held, bytes left free in the heaps after it is
# freed (mallinfo2 sums every arena, glibc >= 2.33).
_PROBE = """
import ctypes, sys, threading
from posenc_jax.harness.runtime import keep_freed_memory

FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in FIELDS.split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "kept":
    assert keep_freed_memory()
out = []

def probe():
    before = libc.mallinfo2()
    block = libc.malloc(int(sys.argv[3]))
    held = libc.mallinfo2()
    libc.free(block)
    after = libc.mallinfo2()
    out.extend([held.hblkhd - before.hblkhd, after.fordblks - before.fordblks])

if sys.argv[2] == "thread":
    worker = threading.Thread(target=probe)
    worker.start()
    worker.join()
else:
    probe()
print(*out)
"""


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not (GLIBC and _has_mallinfo2()), reason="needs glibc >= 2.33")
@pytest.mark.parametrize(
    ("where", "size"),
    [
        ("main", 64 << 20),  # over glibc's largest automatic mmap threshold, 32 MiB
        # A thread's own heap holds no block over 64 MiB, thresholds or not (hence the
        # inline train step, whose scratch the main thread allocates).
        ("thread", 96 << 20),
    ],
)
def test_keep_freed_memory_keeps_large_blocks_of_the_main_thread_only(where, size):
    out = {}
    for mode in ("default", "kept"):
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, mode, where, str(size)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        out[mode] = [int(x) for x in proc.stdout.split()]
    # Free heap bytes move by less than a page-rounded block either way (the block may
    # reuse free space already in the heap), so compare with half the block.
    mapped, kept_free = out["default"]
    assert mapped >= size and kept_free < size // 2  # mapped for the call, unmapped on free
    mapped, kept_free = out["kept"]
    if where == "thread":
        assert mapped >= size  # mapped all the same
    else:
        assert mapped == 0 and kept_free > size // 2  # from the heap, and still there for reuse


@pytest.mark.skipif(GLIBC, reason="other C libraries only")
def test_keep_freed_memory_changes_nothing_without_glibc():
    assert keep_freed_memory() is False


@pytest.mark.parametrize(("flag", "calls"), [([], 1), (["--system-malloc"], 0)])
def test_posenc_run_keeps_freed_memory_unless_told_not_to(monkeypatch, tmp_path, flag, calls):
    seen = []
    monkeypatch.setattr(posenc_jax.harness.runtime, "keep_freed_memory", lambda: seen.append(1))
    monkeypatch.setattr(posenc_jax.harness.runner, "run", lambda *a, **k: [])
    assert main(["run", str(tmp_path / "x.yaml"), "--no-progress", *flag]) == 0
    assert len(seen) == calls
