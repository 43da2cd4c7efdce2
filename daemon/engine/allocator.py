"""One malloc arena for the whole process, so a job's memory budget holds with threads.

glibc gives each thread that allocates its own arena (up to 8 per core), and each arena
keeps the pages of what was freed in it. torch's worker threads allocate too, so with two
threads a tiled 2048 px job (planned at 2038 MB) peaked at 2255 MB, 10.6% over, and a
4096 px job planned at 4065 MB at 4467 MB; with one arena the same 2048 px job peaked at
2116 MB in the same time (3:59 against 4:02, 2-core Zen 4). Off glibc (macOS, Windows,
musl) the allocator is another one and the call is a no-op. Done once per process: an
engine is built per job in some callers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_ARENA_MAX = -8  # glibc's mallopt parameter number


@functools.cache
def limit_arenas(count: int = 1) -> bool:
    """Cap glibc's arenas at ``count``; True when the C library took the setting."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # no libc by that name, or not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_ARENA_MAX, count) == 1
