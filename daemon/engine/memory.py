"""Peak memory of a job, estimated before anything is allocated, and the plan that fits.

A job's peak is three parts:

* the runtime and the network (torch, oneDNN, the VGG19 weights): ``BASE_BYTES``;
* what lives as long as the finest scale, per output pixel: the picture, its gradient,
  the content image and its conv4_2 targets, L-BFGS's previous point and gradient and
  its search direction (``STATE_BYTES_PER_PX``), what a step holds for a moment
  (``STEP_BYTES_PER_PX``), plus 24 bytes per L-BFGS curvature pair (two float32 RGB
  vectors);
* one forward and backward pass of the network over the picture (or over one tile of
  it): ``WHOLE_PASS_BYTES_PER_PX`` (``TILE_PASS_BYTES_PER_PX``) per pixel the network
  sees; or, with the network split (split.py), its deep part over the whole picture
  (``SPLIT_DEEP_BYTES_PER_PX``) plus its shallow part over one tile
  (``SPLIT_TILE_BYTES_PER_PX``);
* on the CPU, the content image as handed over, at its own size
  (``INPUT_BYTES_PER_PX``, counted in ``Limits.base`` by the engine).

The constants are measured (peak RSS of fresh processes, 2-core Zen 4, torch 2.14.1,
VGG19 to conv5_1, channels-last): the runtime with the bfloat16 network held 0.89 GB;
the passes are measured beside their constants. bench/bench_memory.py checks the
estimate against whole jobs at 1024, 2048 and 4096 px.

When the whole picture's pass does not fit, the finest scales split the network, its
shallow blocks in tiles (``split.py``), and when not even that fits, they run the whole
network tile by tile (``tiling.py``): the pass then costs one tile's worth, the
per-pixel state stays. When not even that fits, the job is refused with
``too_large_for_device`` and a size that fits, before it allocates anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from impasto.shared.errors import TOO_LARGE_FOR_DEVICE, ImpastoError

GB = 1024**3
MB = 1024**2

BASE_BYTES = 950 * MB  # runtime + network, measured 0.89 GB, rounded up
# One pass over the whole picture, per pixel: how far RSS rose during a job's first pass
# (7 Dec 2026, one thread; bench_memory.py --sizes 512 1024 1448 2048 --iterations 3
# --budget-mb 16000): in bfloat16 1076, 1069, 991 and 958 B/px at 512x384, 1024x768,
# 1448x1086 and 2048x1536; in float32 1852 B/px at 1024x768. The whole default
# 2048x1536 job (five scales, 200 iterations, 8 frames, history 20 at 2048 px) peaked
# 1132 B/px above BASE and the state. (The constant was 2300 until then, measured before
# the Gram products kept bfloat16: it planned a whole 2048 px pass at 2.4 times what it
# took.) float16 (CUDA) is unmeasured.
WHOLE_PASS_BYTES_PER_PX = {"bfloat16": 1300, "float32": 2200, "float16": 2300}
# One tile's pass, per pixel of its largest window, measured the same way with
# --tile-size 496 and 1024 at 2048x1536: 1183 B/px (20 tiles, 350k px windows) and 1407
# (4 tiles, 968k px), pass 1 in the same tiles; in float32 2253 (4 tiles). Whole multi-scale
# jobs in tiles, with frames, peaked up to 1330 B/px of window above BASE and the state
# (2048 px, 336 px tiles, 6 Dec). This constant keeps that margin.
TILE_PASS_BYTES_PER_PX = {"bfloat16": 2300, "float32": 2600, "float16": 2300}
# Pass 1 of a tiled scale (a forward without gradient summing the Gram matrices), per
# pixel of its largest window, as above: in bfloat16 850 B/px over 420k px windows and
# 651 over 742k px (a style image's targets at 2048 px), 858 over 846k px (at 4096 px);
# in float32 1158 over 742k px (bfloat16: 651). Pass 1 holds about 0.6 of what pass 2
# holds per pixel (651 against 1407 in the same 4 tiles), and the constant keeps that
# ratio to pass 2's, so pass 1's larger windows keep pass 2's margin: at 1000 B/px a
# whole 4096x3072 job under 4 GB (pass 1 in 48 tiles where pass 2 ran 192) rose to
# 3992 MB, 2.5% under the budget, where it had peaked at 3789 MB.
GRAM_PASS_BYTES_PER_PX = {"bfloat16": 1400, "float32": 1900, "float16": 1400}
# The split pass (split.py), per iteration of one scale in a fresh process, first and
# second iteration (7 Dec 2026, one thread; bench_split.py): at 2048x1536 in
# bfloat16 the deep part over the whole picture rose 256-284 B per output pixel with the
# network cut after pool2 and 96-138 after pool3; then the shallow tiles rose 775-860 B
# per pixel of their largest window (296k and 815k px; 1746 in a first iteration, as the
# heap grows once) and 638-1382 after pool3; at 4096x3072 the deep part 280-281 and
# 136-137 B/px (tiles of 512 px). In float32 at 1024x768: deep 448-550 and
# 130-257, tiles 1582-3137 and 1169-2747 over 83k and 124k px windows. The phases follow
# each other; the estimate adds them. The whole default 2048 px job under 3 GB (five
# scales, frames) peaked 2.7% over its budget with the deep part planned at 300 B/px,
# on a heap its larger tiles had left higher; at 360 it peaked 3.3% under it.
SPLIT_DEEP_BYTES_PER_PX = {
    2: {"bfloat16": 360, "float32": 720, "float16": 360},
    3: {"bfloat16": 200, "float32": 360, "float16": 200},
}
SPLIT_TILE_BYTES_PER_PX = {"bfloat16": 1100, "float32": 2200, "float16": 1100}
SPLITS = (2, 3)  # pooling layers the tiles may run through, fewest (cheapest) first
STATE_BYTES_PER_PX = 110  # picture, gradient, content, targets, L-BFGS x/g/direction
PAIR_BYTES_PER_PX = 24  # one L-BFGS curvature pair: s and y, float32 RGB
# The CPU's default budget: half the machine's RAM, but at least 3 GB (a 4 GB laptop
# leaves about that to one program once the desktop has its share), and never more than
# three quarters of what is free as the job starts. A bigger budget buys speed: a whole
# 2048x1536 iteration took 14.6 s where 4 tiles took 31.9 s and 20 tiles 42.1 s (one
# thread, the runs above), since tiles recompute their overlap and run the network once
# more for the Gram sums. The default 2048 px job ran whole in 6.1 GB, where 3 GB needs 20 tiles.
CPU_BUDGET_FLOOR = 3 * GB
CPU_RAM_SHARE = 0.5
CPU_FREE_SHARE = 0.75
# Of a GPU's free memory, keep a tenth for the allocator's fragmentation and the desktop.
GPU_FREE_SHARE = 0.9
# L-BFGS curvature pairs to try, longest first; under three L-BFGS is little better
# than gradient descent.
HISTORIES = (20, 10, 6, 3)
MIN_TILE_CORE = 256  # smaller tiles spend most of their pass on the overlap
# A whole pass while the heap keeps freed pages (allocator.keep_freed_pages) holds more
# than its live tensors: blocks freed between the forward and the backward leave holes
# the next ones do not fit. With the pass term at 1300 B/px, the whole jobs measured
# (7 Dec 2026, bench_memory.py --budget-mb 0 --iterations 25, bfloat16, 2 AMX cores)
# held 1160, 1390 and 1480 B/px above BASE and the state at 1024x768, 1448x1086 and
# 2048x1536, rising with the size (they peaked at 2.33, 4.09 and 7.50 GB against
# 2.0-2.1, 3.25 and 4.52 returning the pages). A plan keeps pages only where the pass
# term times this factor fits too. float32 is unmeasured: its holes are assumed to grow
# with its pass term alike.
KEPT_PASS_FACTOR = 1.6
# What whole jobs (multi-scale, frames, one malloc arena) held beyond the fresh-process
# figures: they peaked 26 (2048 px) and 31 (4096 px) bytes per output pixel above the
# estimate without this term. Since then the L-BFGS step keeps its previous point by
# reference and reuses its oldest pair's buffers, and a frame allocates two
# picture-sized float copies, not eleven: the same jobs now peak 12% under their plans
# at 2048 px (1.90 GiB, planned 2.15) and 7% at 4096 px (3.70 GiB, planned 3.96)
# (bench_memory.py --scales 0 --frames 8; impasto stylize --frames). The term stays as
# that margin: what a tile's pass leaves in the heap varies by 5% between identical runs.
STEP_BYTES_PER_PX = 36

# The content as the job was handed it, held to the end, per pixel of the content (not
# of the output): a float32 RGBA array (16 bytes; imageops uses it as given when it is
# float32 in 0..1, its tensors are views of it) and the 8- or 16-bit upload it came
# from (up to 8). A layer at the output size is 0.4 GB of it at 4096x4096. Style images
# are assumed small beside the content.
INPUT_BYTES_PER_PX = 24


@dataclass(frozen=True)
class MemoryPlan:
    """How one scale runs: whole or in tiles of ``tile`` px (core), with ``history`` pairs."""

    tile: int | None  # core edge of a tile, None = the whole picture in one pass
    history: int  # L-BFGS curvature pairs kept
    peak: int  # estimated peak bytes
    budget: int
    # A tiled scale's core edge for pass 1 (the Gram sums, no gradient), which needs a
    # fraction of pass 2's memory per pixel and so runs in fewer, larger windows (the
    # long edge: one window). None: the same tiles as pass 2.
    gram_tile: int | None = None
    # With a tile: how many pooling layers the tiles run through before the rest of the
    # network runs over the whole picture (split.py); None: the whole network in tiles.
    split: int | None = None
    # Whether the heap keeps freed pages for the next pass (allocator.keep_freed_pages):
    # faster, and counted in ``peak`` (KEPT_PASS_FACTOR).
    keep_pages: bool = False


def _meminfo() -> dict[str, int]:
    """/proc/meminfo's lines in bytes (Linux), else empty."""
    out = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                fields = rest.split()
                if fields and fields[0].isdigit():
                    out[key] = int(fields[0]) * 1024
    except OSError:
        return {}
    return out


def cpu_budget(total: int | None, available: int | None, own: int) -> int:
    """The CPU's default budget on a machine with ``total`` bytes of RAM, ``available``
    of them free, ``own`` already held by this process (see CPU_RAM_SHARE)."""
    cap = max(CPU_BUDGET_FLOOR, int(CPU_RAM_SHARE * total)) if total else CPU_BUDGET_FLOOR
    if available is None:
        return cap
    return min(cap, int(CPU_FREE_SHARE * available) + own)


def default_budget(device_type: str = "cpu") -> int:
    """The budget a job gets when nobody set one.

    CPU: ``cpu_budget`` (half the RAM, at least 3 GB, at most three quarters of what is
    free plus what this process already holds). CUDA: 90% of the GPU's free memory plus
    what this process already holds there. ``IMPASTO_MEMORY_BUDGET_MB`` overrides.
    """
    env = os.environ.get("IMPASTO_MEMORY_BUDGET_MB", "").strip()
    if env:
        try:
            return int(float(env) * MB)
        except ValueError:
            pass
    if device_type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(GPU_FREE_SHARE * free) + torch.cuda.memory_allocated()
    info = _meminfo()
    return cpu_budget(info.get("MemTotal"), info.get("MemAvailable"), _own_rss())


def _own_rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def pass_bytes_per_px(dtype_name: str, tiled: bool) -> int:
    table = TILE_PASS_BYTES_PER_PX if tiled else WHOLE_PASS_BYTES_PER_PX
    return table.get(dtype_name, table["float32"])


def gram_bytes_per_px(dtype_name: str) -> int:
    return GRAM_PASS_BYTES_PER_PX.get(dtype_name, GRAM_PASS_BYTES_PER_PX["float32"])


def split_bytes_per_px(dtype_name: str, pools: int) -> tuple[int, int]:
    """(deep part per output pixel, shallow tile per window pixel) of a split pass."""
    deep = SPLIT_DEEP_BYTES_PER_PX[pools]
    tile = SPLIT_TILE_BYTES_PER_PX
    return deep.get(dtype_name, deep["float32"]), tile.get(dtype_name, tile["float32"])


def window(length: int, tile: int, halo: int, align: int = 16) -> int:
    """The longest window ``tiling.grid`` makes along a side of ``length`` px."""
    n = -(-length // tile)
    if n == 1:
        return length
    band = -(-length // n // align) * align + align  # bands are rounded to the alignment
    return min(length, band + (2 if n > 2 else 1) * halo)


def estimate(
    height: int,
    width: int,
    dtype_name: str,
    tile: int | None,
    halo: int,
    history: int,
    base: int = BASE_BYTES,
    align: int = 16,
    gram_tile: int | None = None,
    split: tuple[int, int] | None = None,
    keep_pages: bool = False,
) -> int:
    """Estimated peak bytes of a scale of ``height`` x ``width`` run as planned.

    ``split``: (pooling layers, their halo) when the tiles run only the network's
    shallow blocks. A tiled scale's Gram pass (pass 1, or a style image's targets) and
    its gradient pass follow each other, so the larger of them counts. ``keep_pages``:
    a whole pass with the heap keeping freed pages (``KEPT_PASS_FACTOR``)."""
    pixels = height * width
    state = pixels * (STATE_BYTES_PER_PX + STEP_BYTES_PER_PX + PAIR_BYTES_PER_PX * history)
    if tile is None:
        factor = KEPT_PASS_FACTOR if keep_pages else 1.0
        return base + state + int(pixels * pass_bytes_per_px(dtype_name, False) * factor)
    g = gram_tile or tile
    gram_seen = window(height, g, halo, align) * window(width, g, halo, align)
    if split is None:
        seen = window(height, tile, halo, align) * window(width, tile, halo, align)
        grad_pass = seen * pass_bytes_per_px(dtype_name, True)
    else:
        pools, split_halo = split
        seen = window(height, tile, split_halo, align) * window(width, tile, split_halo, align)
        deep, shallow = split_bytes_per_px(dtype_name, pools)
        grad_pass = pixels * deep + seen * shallow
    return base + state + max(grad_pass, gram_seen * gram_bytes_per_px(dtype_name))


@dataclass(frozen=True)
class Limits:
    """What a plan depends on besides the picture: arithmetic, budget, tiling geometry."""

    dtype_name: str
    budget: int
    halo: int  # tiling.halo of the job's network
    align: int  # tiling.alignment
    can_tile: bool
    base: int = BASE_BYTES
    # (pooling layers, halo) of each split of the network the job allows (split.py),
    # cheapest first; empty: none.
    splits: tuple[tuple[int, int], ...] = ()
    # Whether a whole scale may keep freed pages (the CPU, where glibc's are mapped).
    can_keep_pages: bool = False


def plan_scale(height: int, width: int, limits: Limits) -> MemoryPlan | None:
    """The fastest way to run a scale within the budget, or None when none fits.

    Prefers the whole picture at any history (with the heap keeping its freed pages
    where that fits too: 1.1-1.6x as fast at 1024-2048 px, allocator.keep_freed_pages),
    then the network split with its shallow blocks in the largest tiles that fit
    (0.85-1.05 times a whole pass returning its pages, on 2 AMX cores at 1024-2048 px,
    bench_split.py), then the whole network in the largest tiles that fit (2.2-2.9
    times, measured on Zen 4 before the tiles' style terms stopped copying their cores),
    shortening L-BFGS's history only where the next cheaper way would not fit. A whole
    2048x1536 iteration took under half the time of 4 tiles (14.6 s against 31.9 s, one
    thread), while fewer curvature pairs cost less than that (bench_precision.py
    --history, 512 px, 120 iterations: 6 and 3 pairs left the average-pooled style 10%
    and 17% above 20 pairs', the max-pooled 5% and 9% below, content within 3%). A tiled
    scale's pass 1 then gets the largest windows the budget leaves.
    """
    lim = limits

    def peak(tile: int | None, history: int, gram=None, split=None, keep=False) -> int:
        return estimate(
            height,
            width,
            lim.dtype_name,
            tile,
            lim.halo,
            history,
            lim.base,
            lim.align,
            gram,
            split,
            keep,
        )

    def tiled(split: tuple[int, int] | None, first: int) -> MemoryPlan | None:
        """The largest tile from ``first`` down that fits, at the longest history."""
        for history in HISTORIES:
            for tile in range(first, 0, -lim.align):
                if tile < MIN_TILE_CORE:
                    break
                if peak(tile, history, tile, split) <= lim.budget:
                    edges = range(max(height, width), tile, -lim.align)
                    fits = (g for g in edges if peak(tile, history, g, split) <= lim.budget)
                    gram = next(fits, tile)
                    pools = split[0] if split else None
                    found = peak(tile, history, gram, split)
                    return MemoryPlan(tile, history, found, lim.budget, gram, pools)
        return None

    for history in HISTORIES:
        whole = peak(None, history)
        if whole <= lim.budget:
            kept = peak(None, history, keep=True)
            if lim.can_keep_pages and kept <= lim.budget:
                return MemoryPlan(None, history, kept, lim.budget, keep_pages=True)
            return MemoryPlan(None, history, whole, lim.budget)
    if not lim.can_tile:
        return None
    for split in lim.splits:  # one tile along the long edge is still a split
        plan = tiled(split, max(height, width))
        if plan is not None:
            return plan
    return tiled(None, (max(height, width) - 1) // lim.align * lim.align)


def _fits_at(height: int, width: int, long_edge: int, limits: Limits) -> bool:
    """Whether the picture, scaled to ``long_edge``, has a plan within the budget."""
    edge = max(height, width)
    h, w = max(1, round(height * long_edge / edge)), max(1, round(width * long_edge / edge))
    return plan_scale(h, w, limits) is not None


def fitting_size(height: int, width: int, limits: Limits) -> int:
    """The largest long edge (a multiple of 64, at least 64) whose job fits the budget."""
    lo, hi = 64, max(height, width)
    while hi - lo > 64:
        mid = (lo + hi) // 2 // 64 * 64
        if _fits_at(height, width, mid, limits):
            lo = mid
        else:
            hi = mid
    return lo


def too_large(height: int, width: int, limits: Limits, device: str) -> ImpastoError:
    """The error for a job no plan fits, naming a size that would (if any would)."""
    budget = limits.budget
    suggestion = fitting_size(height, width, limits)
    if not _fits_at(height, width, suggestion, limits):
        return ImpastoError(
            f"before any picture, this job needs {limits.base / GB:.1f} GB (the runtime, "
            f"the network and the content image as sent), more than this {device}'s memory "
            f"budget of {budget / GB:.1f} GB allows; raise the budget (daemon "
            "--memory-budget, IMPASTO_MEMORY_BUDGET_MB) or send a smaller image",
            TOO_LARGE_FOR_DEVICE,
        )
    return ImpastoError(
        f"a {width}x{height} picture needs more memory than this {device}'s budget of "
        f"{budget / GB:.1f} GB allows; ask for {suggestion} px or less on the long edge, "
        "or raise the budget (daemon --memory-budget, IMPASTO_MEMORY_BUDGET_MB)",
        TOO_LARGE_FOR_DEVICE,
    )
