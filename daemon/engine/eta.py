"""An honest ETA: each iteration weighted by what it costs, the machine's speed learned.

The old ETA divided elapsed time by the share of pixel-iterations done. Early in a run
that share is mostly the coarse scales, where setup, style analysis and per-iteration
overhead dominate, so it said 4:12 left at 11 s of a 2:07 run. Here:

* an iteration at a scale costs ``FIXED_PX + pixels the network sees`` (tiled scales see
  their halos twice over: pass 1 forward plus pass 2 forward and backward), a cost in
  "pixel units";
* building a scale's targets costs about ``TARGET_SHARE`` of one iteration per target
  image (resizing, hashing for the cache, a forward pass without gradient);
* the seconds per unit are learned from the iterations run so far (setup and target
  building timed apart, the first iteration after a scale change excluded), starting
  from ``prior`` (the engine's speed from its previous job on that device) or, before
  any iteration at all, from ``DEFAULT_SECONDS_PER_UNIT``.

bench/bench_eta.py reports its error over one job on the wall clock, eta_replay.py
over bench_schedule.py's recorded runs.
"""

from __future__ import annotations

from dataclasses import dataclass

# Per-iteration overhead in pixel units (python, L-BFGS, bookkeeping), and what building
# one target image's statistics costs relative to one iteration at the same size. Fitted
# to bench_schedule.py's 256 px coarse-to-fine run (2 cores shared, one thread): median
# iterations of 0.90, 1.52 and 2.92 s at 128x96, 181x136 and 256x192 px (a line with
# 4k px of overhead), each scale's first iteration with its content and style targets
# 4.4 s at 181 and 256 px (about two iterations: one per target image).
FIXED_PX = 4096.0
TARGET_SHARE = 1.0
# What a tiled scale's pass 1 (a forward pass without gradient) and the tiles' own
# overhead add per window pixel to pass 2's forward and backward. A forward pass alone is
# about a third, but measured (one thread, 768x576 px, 5 iterations, one scale): untiled
# 3.47 s per iteration, tiles of 496 px 9.41 s, of 256 px 13.40 s, i.e. 1.63 and 1.55
# units per window pixel.
FORWARD_SHARE = 0.6
# What a split scale's (split.py) shallow blocks add per tile window pixel to the whole
# picture's forward and backward: they run forward once more, without gradient, but in
# windows that stay in cache, where the whole pass maps and faults in its large tensors
# every iteration. Measured (bench_split.py --iterations 3-4, one thread, two processes
# side by side, 2 AMX cores, 7 Dec 2026): with tiles of 336 px after pool2, 1.05x the
# whole pass at 1024x768, 0.95x at 1448x1086, 0.85-0.93x at 2048x1536; after pool3
# 1.06-1.1x at 2048x1536 over windows 1.65 times the picture. (Before the style terms
# stopped cutting cores out of the tiles and the ReLU ran in the convolution, pool2's
# split was 1.4-1.6x the whole pass there, and the shares were 0.4 and 0.55.)
SPLIT_SHARE = {2: 0.0, 3: 0.05}
# What a whole scale's pixel costs while the heap keeps its freed pages
# (allocator.keep_freed_pages) against one that maps and faults them in every pass: the
# cost model above was measured on the latter. Kept against returned, per iteration
# (7 Dec 2026, 2 AMX cores, bfloat16): 0.93-0.96 at 512x384 and 0.71-0.72 at 1024x768
# (bench_iteration.py), 0.87 at 1024x768, 0.83 at 1448x1086 and 0.63 at 2048x1536 in
# whole jobs (bench_memory.py). A 2048 px job under 3 GB, whose coarse scales keep
# pages and whose finest two are split, was predicted up to 25% short from 10% of the
# run on and 10% from 25% without it; 18-20% and 1-11% with it, two runs
# (bench_eta.py --size 2048 --budget-mb 3072, wall clock, 416-437 s runs).
KEPT_SHARE = 0.85
# What the speed measured at earlier scales keeps of its weight when a finer one starts:
# per pixel, small pictures run less efficiently than the model's FIXED_PX captures.
SCALE_DECAY = 0.5
# 2-core Zen 4 with AMX, bfloat16: ~0.5 s per iteration at 512x384 (issue 13).
DEFAULT_SECONDS_PER_UNIT = 0.5 / (512 * 384 + FIXED_PX)


@dataclass(frozen=True)
class ScaleCost:
    iterations: int
    per_iteration: float  # pixel units
    targets: float  # pixel units, once at the start of the scale


def scale_cost(
    height: int,
    width: int,
    iterations: int,
    windows: list[int] | None,
    n_targets: int,
    gram_windows: list[int] | None = None,
    kept: bool = False,
) -> ScaleCost:
    """Cost of one scale; ``windows``: the tiles' window areas when tiled, else None;
    ``gram_windows``: pass 1's, when it runs in other tiles than pass 2; ``kept``: a
    whole scale whose freed pages the heap keeps (``KEPT_SHARE``)."""
    if windows is None:
        per = FIXED_PX + height * width * (KEPT_SHARE if kept else 1.0)
        targets = n_targets * TARGET_SHARE * height * width
    else:
        seen = sum(windows)
        per = FIXED_PX + seen + sum(gram_windows or windows) * FORWARD_SHARE
        targets = n_targets * TARGET_SHARE * seen
    return ScaleCost(iterations, per, targets)


def split_cost(
    height: int, width: int, iterations: int, windows: list[int], pools: int, n_targets: int
) -> ScaleCost:
    """Cost of a scale whose network is split after ``pools`` pooling layers, its
    shallow blocks in tiles of ``windows`` (split.py)."""
    per = FIXED_PX + height * width + SPLIT_SHARE[pools] * sum(windows)
    return ScaleCost(iterations, per, n_targets * TARGET_SHARE * height * width)


class Eta:
    """Seconds left in a run, from the plan's costs and the speed seen so far."""

    def __init__(
        self, costs: list[ScaleCost], prior: float | None = None, finest_expected: int | None = None
    ):
        self.costs = costs
        self.prior = prior or DEFAULT_SECONDS_PER_UNIT
        # A job that ends once its finest scale's loss is flat (schedule.finishes) is
        # expected to run this many iterations there, not all it was given.
        self.finest_expected = finest_expected
        self.scale = 0
        self.done_in_scale = 0
        self.targets_built = False
        self._seconds = 0.0  # measured steady iterations (older scales decayed)
        self._units = 0.0
        self._count = 0.0

    @property
    def speed(self) -> float:
        """Seconds per pixel unit: measured once there is something to measure."""
        if self._units <= 0:
            return self.prior
        # Lean on the prior as much as on two measured iterations, so one noisy
        # iteration does not swing the ETA.
        weight = 2 * self._units / self._count
        return (self._seconds + self.prior * weight) / (self._units + weight)

    def targets(self, scale: int) -> None:
        """The targets of ``scale`` (0-based) are built; its iterations start."""
        self.scale, self.done_in_scale, self.targets_built = scale, 0, True

    def iteration(self, scale: int, seconds: float) -> None:
        """One iteration of ``scale`` took ``seconds`` (targets excluded)."""
        if scale != self.scale:
            self.targets(scale)
        first = self.done_in_scale == 0
        self.done_in_scale += 1
        if first:  # allocations and caches make each scale's first slower
            return
        if self.done_in_scale == 2:  # a new scale: its own speed counts more
            self._seconds *= SCALE_DECAY
            self._units *= SCALE_DECAY
            self._count *= SCALE_DECAY
        self._seconds += seconds
        self._units += self.costs[scale].per_iteration
        self._count += 1

    def reassign(self, source: int, target: int, iterations: int) -> None:
        """``iterations`` planned for scale ``source`` will run at scale ``target`` instead."""
        c, t = self.costs[source], self.costs[target]
        self.costs[source] = ScaleCost(c.iterations - iterations, c.per_iteration, c.targets)
        self.costs[target] = ScaleCost(t.iterations + iterations, t.per_iteration, t.targets)

    def finish(self) -> None:
        """The run ends with the iteration just counted (its finest scale's loss is flat)."""
        self.costs = self.costs[: self.scale + 1]
        c = self.costs[self.scale]
        self.costs[self.scale] = ScaleCost(self.done_in_scale, c.per_iteration, c.targets)

    def replan(self, costs: list[ScaleCost]) -> None:
        """The rest of the run follows new scales (an "auto" job that turned
        coarse-to-fine); the speed learned so far carries over."""
        self.costs = costs
        self.scale, self.done_in_scale, self.targets_built = 0, 0, False

    @property
    def finest_shortened(self) -> int | None:
        """``finest_expected`` where it is fewer than the finest scale was given (else
        every planned iteration counts, and None)."""
        fe = self.finest_expected
        return fe if fe is not None and fe < self.costs[-1].iterations else None

    def _iterations(self, k: int) -> int:
        """Iterations expected of scale ``k``: the finest may end early on a flat loss,
        and while it runs past its expected count, one more is expected at a time."""
        n = self.costs[k].iterations
        if self.finest_expected is None or k != len(self.costs) - 1:
            return n
        done = self.done_in_scale if k == self.scale else 0
        return min(n, max(self.finest_expected, done + 1))

    def remaining(self) -> float:
        units = 0.0
        for k, c in enumerate(self.costs):
            if k < self.scale:
                continue
            if k == self.scale:
                units += c.per_iteration * max(0, self._iterations(k) - self.done_in_scale)
                if not self.targets_built:
                    units += c.targets
            else:
                units += c.per_iteration * self._iterations(k) + c.targets
        return units * self.speed

    def measured(self) -> float | None:
        """Seconds per unit from this run alone (what the next run starts from)."""
        return self._seconds / self._units if self._units > 0 else None

    def total_before(self) -> float:
        """Seconds the whole run should take, before it starts."""
        units = sum(
            c.per_iteration * self._iterations(k) + c.targets for k, c in enumerate(self.costs)
        )
        return units * self.prior
