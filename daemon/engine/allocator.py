"""What the process's allocators may keep: so a job's memory budget holds with threads,
and so a whole pass reuses its pages where the budget has room (``keep_freed_pages``).

Three things held memory a job's plan does not count (memory.py counts live tensors):

* glibc gives each thread that allocates its own arena (up to 8 per core), and each
  arena keeps the pages of what was freed in it. torch's worker threads allocate too, so
  with two threads a tiled 2048 px job (planned at 2038 MB) peaked at 2255 MB, 10.6%
  over, and a 4096 px job planned at 4065 MB at 4467 MB; with one arena
  (``limit_arenas``) the same 2048 px job peaked at 2116 MB in the same time (3:59
  against 4:02, 2-core Zen 4).
* oneDNN keeps every convolution it has built, by shape, up to 1024 of them, and a tiled
  or split job builds some for each window shape at every scale. With AMX, a VGG19 pass
  over each of 25 new window shapes raised RSS by 443 MB with the default cache and by
  190 MB without one; the default 2048 px job under 3 GB, cut to 24 iterations, peaked
  at 3.14 GB with the default capacity, 3.09 at 256 entries, 2.99 at 128 and 2.86 at
  64, at 8.1, 7.8, 8.2 and 8.7 s per 2048 px iteration (bench_memory.py --scales 0
  --frames 8, 2 AMX cores). ``limit_primitive_cache`` sets 128.
* glibc serves blocks under 32 MB from the heap, which keeps their pages when they are
  freed, and larger ones from mappings of their own. So what one phase freed in the heap
  stayed counted while the next phase's large tensors were mapped beside it
  (``release_free_pages``). The whole 200-iteration 2048 px job under 3 GB on 2 AMX
  cores: 3.26 GB with the cache at 128 alone, 3.03 with the heap released at each
  scale, 2.57 when also released before each split pass's deep part (split.py), which
  costs 9% of the time (9.1 s per 2048 px iteration against 8.2-8.4).

Off glibc (macOS, Windows, musl) the allocator is another one and the glibc calls are
no-ops. The arena cap is set once per process: an engine is built per job in some
callers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's mallopt numbers
PRIMITIVE_CACHE_CAPACITY = 128


@functools.cache
def _glibc(name: str):
    """The C library's function ``name`` (glibc's malloc controls), or None off glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):  # no libc by that name, or not glibc
        return None


@functools.cache
def limit_arenas(count: int = 1) -> bool:
    """Cap glibc's arenas at ``count``; True when the C library took the setting."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_ARENA_MAX, count) == 1


# glibc's thresholds while pages are kept (no mapping under 2 GB, no trimming), and
# after: the ceilings its own dynamic thresholds rise to (32 and 64 MB on 64 bits).
KEPT_THRESHOLDS = (2**31 - 1, 2**31 - 1)
USUAL_THRESHOLDS = (32 * 1024 * 1024, 64 * 1024 * 1024)
_kept = False


def keep_freed_pages(keep: bool) -> bool:
    """Whether glibc keeps what is freed for reuse (``keep``) or gives large blocks back
    at once; True when the setting is now ``keep``.

    A block over glibc's threshold (32 MB at most) gets a mapping of its own, whose pages
    fault in, zeroed, every time it is allocated: a whole pass over a large picture maps
    and faults in its activations every iteration. Kept in the heap, they are reused.
    A whole 2048x1536 iteration took 3.7 s kept against 5.8-5.9 s, 1448x1086 1.9 against
    2.3, 1024x768 1.0 against 1.1-1.2 (bench_memory.py --budget-mb 0, 2 AMX cores; the
    system time fell from 134 to 20 s over both jobs). The heap's holes cost memory:
    the same 2048 px job peaked at 7.50 GB against 4.52 (memory.KEPT_PASS_FACTOR). So
    the engine keeps pages only for a whole-picture scale the budget has room for, not
    in tiles (whose blocks are small enough for the heap anyway). The setting is the
    process's: a GPU job beside a CPU one allocates little on the host.
    """
    global _kept
    if keep == _kept:
        return True
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return not keep
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_threshold, trim_threshold = KEPT_THRESHOLDS if keep else USUAL_THRESHOLDS
    if mallopt(M_MMAP_THRESHOLD, mmap_threshold) == mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1:
        _kept = keep
    return _kept == keep


def can_keep_pages() -> bool:
    """Whether ``keep_freed_pages`` can take effect here (glibc)."""
    return _glibc("mallopt") is not None


def pages_kept() -> bool:
    """Whether ``keep_freed_pages(True)`` is in force."""
    return _kept


def release_free_pages() -> bool:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim``); True when
    some were. For the moment before a phase whose large tensors come from mappings of
    their own: a new scale's state, a split pass's deep part."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim(0) == 1


def limit_primitive_cache(capacity: int = PRIMITIVE_CACHE_CAPACITY) -> bool:
    """Cap oneDNN's primitive cache at ``capacity`` entries unless the environment already
    sets it; True when this call set it. oneDNN reads the setting when it builds its first
    primitive, so this must come before the process's first convolution."""
    if (
        "ONEDNN_PRIMITIVE_CACHE_CAPACITY" in os.environ
        or "DNNL_PRIMITIVE_CACHE_CAPACITY" in os.environ
    ):
        return False
    os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(capacity)
    return True
