"""Coarse-to-fine: which resolutions to optimise at, and how many iterations each gets.

A picture's layout settles at low resolution where an iteration is cheap; each finer
scale then only adds detail (crowsonkb/style-transfer-pytorch does the same with a √2
step). The finest scale gets the largest single share: an upscaled picture lacks the
fine texture the first style layers measure, and only iterations at full size restore it.
The coarser scales share the rest, the cheapest getting the most. Trials of several
splits at 512 px, scored by bench/engine_evaluator.py, chose this one: the finest scale
needs about 45 iterations to rebuild its texture whatever came before, and coarse
iterations beyond ~140 no longer shorten that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCALE_STEP = math.sqrt(2.0)
MIN_EDGE = 128  # the coarsest long edge for outputs of 256 px and more
SMALLEST_EDGE = 32  # never optimise a long edge below this
# The finest scale's share of the iterations; of the rest, each finer scale gets this
# fraction of the scale before it.
FINEST_SHARE = 0.3
DECAY = 0.8


# stroke_scale "auto": up to this long edge one scale (unless its probe, below, finds a
# slow start); above it the layout is set cheaply
# from a quarter of the size. bench_schedule.py (max-pooled judge, style and content
# apart, each finished multi-scale picture against one scale at the same CPU time):
# at 256 and 512 px the pair decides (one scale better on both on tubingen and
# astronaut, coarse-to-fine on chelsea/seated-nude), so no fixed choice wins on every
# pair and one scale, which keeps the content, is the default; at 1024 px one scale won
# on both on tubingen (a trade-off on astronaut); at 2048 px the quarter-size start
# traded style for content against one scale (tubingen), in 43% of one scale's time.
AUTO_SINGLE_MAX = 1024
# Output edge / coarsest edge per stroke scale (None: the coarsest is MIN_EDGE).
STROKE_RATIO = {"fine": 1.0, "medium": 2.0, "auto": 4.0, "large": None}
# "auto" above AUTO_SINGLE_MAX leaves a coarse scale early once its loss flattens: less
# than this relative drop over the last PLATEAU_WINDOW iterations (its remaining
# iterations go to the finest).
PLATEAU_WINDOW = 8
PLATEAU_DROP = 0.02
# ... and ends the job once its finest scale's total loss falls by less than
# FINISH_DROP over FINISH_WINDOW iterations. bench_finish.py at 2048 px, standard budget
# (62 finest iterations), two pairs, rule off, every rule replayed: any rule that fired
# left the judges worse than the budget's end (avg-pooled style +22% at best, 5-14% of
# the CPU saved; window 4 / 5% cost +116-137%), and 8 / 2% fired on neither pair. So this
# rule only ends a longer job ("fine") whose loss has truly stopped moving.
FINISH_WINDOW = 8
FINISH_DROP = 0.01
# Where it fires, for the ETA: the "fine" preset at 2048 px under a 3 GB budget (123
# finest iterations planned, more carried from coarse scales that flattened) finished at
# the finest scale's 83rd iteration on tubingen/starry_night and its 95th on
# rocket/starry_night (2 AMX cores, 604-720 s). Counting every planned iteration, the
# ETA predicted 924-930 s for a job that ended at 628 s (48% off); the middle of the two
# is within 6 iterations (30 s) of both. On a roomy budget (whole, history 20) tubingen
# went to 105, 16 iterations (45 s, 9% of that run) past this. Other sizes are
# unmeasured and get the same.
FINISH_EXPECTED: int | None = 89
# "auto" up to AUTO_SINGLE_MAX watches one scale's first PROBE_ITERATIONS: where the
# style loss keeps over SLOW_STYLE of its start there, the rest of the budget goes
# coarse-to-fine as PROBE_SWITCH_TO plans it, where big colour fields move at a
# fraction of the cost. bench_probe.py against bench_schedule.py's verdicts (24 pairs at
# 256 and 512 px, max-pooled judge): the one pair that kept 0.41-0.45 (chelsea /
# seated-nude; no other above 0.32) is the one where coarse-to-fine beat one scale on
# style and content by the widest margin, at every size and budget tried (256-1024 px).
# Milder coarse wins showed 0.04-0.24, overlapping pairs where it lost on both (0.05),
# so no threshold separates those; this one sits above them all, since a wrong switch
# costs layout (the layout judge preferred one scale in every run).
# Why 10 iterations: the style loss kept after k of them (bench_probe.py's curves, 24
# pairs) puts chelsea/seated-nude first only from k = 7, 1.13-1.18x above the next pair,
# as others fall off a cliff in iterations 2-6; at k = 10 it is 1.42x above at 256 and
# 512 px.
PROBE_ITERATIONS = 10
SLOW_STYLE = 0.35  # style loss after the probe / before it, above which the start is slow
PROBE_MIN_BUDGET = 4 * PROBE_ITERATIONS  # shorter jobs keep one scale, unprobed
# The plan a slow start switches to. chelsea/seated-nude at 512 px, 100 iterations
# (bench_schedule.py with the layout judge): from half the size 34.4k / 2334 (max-pooled
# style / content) and layout 0.128 in 73 CPU s; from MIN_EDGE 34.5k / 2508 and 0.145 in
# 60 s, the cat's face melted by eye; one scale at 73 s: 141k / 2743, 0.081. (At 256 px
# the two plans are the same.)
PROBE_SWITCH_TO = "medium"


def n_scales(stroke_scale: str, long_edge: int, scales: int | None) -> int | None:
    """How many scales a job gets (None: down to MIN_EDGE); ``scales`` wins if set."""
    if scales is not None:
        return scales
    if stroke_scale == "auto" and long_edge <= AUTO_SINGLE_MAX:
        return 1
    ratio = STROKE_RATIO[stroke_scale]
    if ratio is None:
        return None
    return 1 + max(0, math.floor(math.log(ratio, SCALE_STEP) + 1e-9))


def flattened(
    totals: list[float], window: int = PLATEAU_WINDOW, drop: float = PLATEAU_DROP
) -> bool:
    """True when the loss fell by less than ``drop`` (relative) over the last ``window``."""
    if len(totals) <= window:
        return False
    before, now = totals[-1 - window], totals[-1]
    return before > 0 and (before - now) / before < drop


def finished(totals: list[float]) -> bool:
    """True when the finest scale's loss has flattened (FINISH_WINDOW, FINISH_DROP)."""
    return flattened(totals, FINISH_WINDOW, FINISH_DROP)


def finishes(stroke_scale: str, long_edge: int, scales: int | None) -> bool:
    """Whether a job ends when its finest scale's loss flattens (see FINISH_WINDOW)."""
    return stroke_scale == "auto" and scales is None and long_edge > AUTO_SINGLE_MAX


def finest_expected(stroke_scale: str, long_edge: int, scales: int | None) -> int | None:
    """The finest-scale iterations the ETA expects of a job that ``finishes`` early."""
    return FINISH_EXPECTED if finishes(stroke_scale, long_edge, scales) else None


def probe_ratio(styles: list[float]) -> float:
    """The style loss at the probe's last iteration over its first (``styles``: the
    style loss each iteration reported, of the picture it started from)."""
    if len(styles) < PROBE_ITERATIONS or styles[0] <= 0:
        return 0.0
    return styles[PROBE_ITERATIONS - 1] / styles[0]


def is_slow(ratio: float) -> bool:
    """Auto's decision on a probe's ratio: over SLOW_STYLE of the style loss kept."""
    return ratio > SLOW_STYLE


def starts_slowly(styles: list[float]) -> bool:
    """True when the probe's steps kept over SLOW_STYLE of the style loss."""
    return is_slow(probe_ratio(styles))


def probes(stroke_scale: str, long_edge: int, scales: int | None, total: int, init: str) -> bool:
    """Whether a job starts at one scale and may turn coarse-to-fine (see PROBE_ITERATIONS).

    Only from the content image, where the probe was measured: a picture already styled
    (a refinement, a resumed job) falls slowly because it is near its end, not because
    its start is hard.
    """
    return (
        stroke_scale == "auto"
        and scales is None
        and init == "content"
        and long_edge <= AUTO_SINGLE_MAX
        and total >= PROBE_MIN_BUDGET
    )


@dataclass(frozen=True)
class Scale:
    height: int
    width: int
    iterations: int


def scale_edges(long_edge: int, n_scales: int | None) -> list[int]:
    """Long edges from coarse to fine, ending at ``long_edge``."""
    if n_scales is None:
        low = max(SMALLEST_EDGE, min(MIN_EDGE, long_edge // 2))
        n_scales = 1 + max(0, math.floor(math.log(long_edge / low, SCALE_STEP) + 1e-9))
    edges = [round(long_edge / SCALE_STEP**i) for i in range(n_scales)]
    edges = [e for e in edges if e >= min(SMALLEST_EDGE, long_edge)] or [long_edge]
    return sorted(set(edges))


def split_iterations(total: int, n: int) -> list[int]:
    """Iterations per scale (coarse first) summing to ``total``; every scale gets >= 1."""
    if n == 1:
        return [total]
    if total < n:
        return [0] * (n - total) + [1] * total  # tiny budgets: only the finest scales run
    coarse = [DECAY**i for i in range(n - 1)]
    weights = [(1 - FINEST_SHARE) * w / sum(coarse) for w in coarse] + [FINEST_SHARE]
    counts = [max(1, int(total * w)) for w in weights]
    counts[-1] += total - sum(counts)
    while counts[-1] < 1:  # rounding took too much from the finest scale
        i = max(range(n - 1), key=lambda k: counts[k])
        counts[i] -= 1
        counts[-1] += 1
    return counts


def plan(height: int, width: int, total: int, n_scales: int | None) -> list[Scale]:
    """The scales of one job, each with its (height, width) and iteration count."""
    long_edge = max(height, width)
    edges = scale_edges(long_edge, n_scales)
    counts = split_iterations(total, len(edges))
    out = []
    for edge, count in zip(edges, counts, strict=True):
        if count == 0:
            continue
        s = edge / long_edge
        h, w = (height, width) if edge == long_edge else (round(height * s), round(width * s))
        out.append(Scale(max(1, h), max(1, w), count))
    return out
