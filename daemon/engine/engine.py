"""Engine: runs one style-transfer job from arrays to an array, coarse to fine.

It owns the models (one per extractor, weights, pooling, device and depth) and the
target cache, so a long-lived daemon pays for model loading and style analysis once.
It knows nothing about sockets: callers pass a progress callback and a cancel token.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from impasto.shared.errors import (
    BAD_IMAGE,
    BAD_OPTIONS,
    OUT_OF_MEMORY,
    TOO_LARGE_FOR_DEVICE,
    ImpastoError,
)
from impasto.shared.options import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_STYLE_LAYERS,
    MAX_STYLES,
    JobOptions,
    OptionsError,
)

from . import colors, devices, eta, imageops, memory, schedule, tiling
from .allocator import (
    can_keep_pages,
    keep_freed_pages,
    limit_arenas,
    limit_primitive_cache,
    release_free_pages,
)
from .losses import blended_style_targets, style_constant, style_targets
from .models import EXTRACTOR_DEFAULT_LAYERS, VGG_CONFIGS, FeatureExtractor, check_layers
from .objective import Objective
from .optimize import optimise_scale
from .split import SplitObjective
from .targets import TargetCache, tensor_digest
from .types import CancelToken, Progress, StyleResult
from .weights import load_extractor
from .weightsource import WeightSource

ProgressCallback = Callable[[Progress], None]


def check_options(options) -> JobOptions:
    if isinstance(options, dict):
        options = JobOptions.from_dict(options) if options else JobOptions()
    if not isinstance(options, JobOptions):
        raise ImpastoError(f"options must be JobOptions, got {type(options).__name__}", BAD_OPTIONS)
    try:
        options.validate()
    except OptionsError as exc:
        raise ImpastoError(str(exc), BAD_OPTIONS) from exc
    for name in ("style_weight", "content_weight", "tv_weight"):
        value = getattr(options, name)
        if value is not None and value < 0:
            raise ImpastoError(f"option '{name}': {value} must not be negative", BAD_OPTIONS)
    return options


def job_layers(options: JobOptions) -> tuple[list[str], list[str]]:
    """Content and style layers, mapping the VGG defaults to other extractors' defaults."""
    content, style = list(options.content_layers), list(options.style_layers)
    if options.extractor in EXTRACTOR_DEFAULT_LAYERS:
        defaults = EXTRACTOR_DEFAULT_LAYERS[options.extractor]
        if content == list(DEFAULT_CONTENT_LAYERS):
            content = list(defaults[0])
        if style == list(DEFAULT_STYLE_LAYERS):
            style = list(defaults[1])
    return content, style


def min_side(model: FeatureExtractor, upto: int) -> int:
    """Smallest image side for which every feature map up to ``upto`` is non-empty."""
    if model.name in VGG_CONFIGS:
        pools = sum(
            isinstance(m, torch.nn.AvgPool2d | torch.nn.MaxPool2d) for m in model.body[: upto + 1]
        )
        return 2**pools
    return 75 if model.name == "inception_v3" else 32


# should_stop's answers that only move a job to another scale (not the end of the job)
MOVES = ("plateau", "coarser")
# The calibration job: its first iteration is not timed (eta.Eta), the others are. The
# speed per ETA cost unit barely depends on the size: one thread, bfloat16, a fresh
# engine per size on the 2-core Zen 4, 13.2 / 14.1 / 15.3 / 15.0 / 15.3 µs per unit at
# 128 / 256 / 384 / 512 / 768 px; 256 px is within 8% of them all above it, in about a
# second.
CALIBRATION_EDGE = 256
CALIBRATION_ITERATIONS = 3


def scales_plan(
    out_h: int, out_w: int, total: int, n_scales: int | None, need: int
) -> list[schedule.Scale]:
    """The job's scales, leaving out those too small for the network (the finest runs
    their iterations instead)."""
    plan = [
        s for s in schedule.plan(out_h, out_w, total, n_scales) if min(s.height, s.width) >= need
    ]
    lost = total - sum(s.iterations for s in plan)
    if lost:
        plan[-1] = schedule.Scale(out_h, out_w, plan[-1].iterations + lost)
    return plan


def scale_costs(
    plan: list[schedule.Scale],
    memory_plans: list[memory.MemoryPlan],
    model: FeatureExtractor,
    upto: int,
    n_styles: int,
) -> list[eta.ScaleCost]:
    """The ETA's cost of each scale: its pixels, or its tiles' windows when tiled."""
    costs = []
    align = tiling.alignment(model)
    for s, m in zip(plan, memory_plans, strict=True):
        if m.tile is None:
            costs.append(
                eta.scale_cost(
                    s.height, s.width, s.iterations, None, 1 + n_styles, kept=m.keep_pages
                )
            )
            continue
        halo = tiling.halo(model, upto if m.split is None else cut_index(model, m.split))
        windows = tiling.window_areas(tiling.grid(s.height, s.width, m.tile, halo, align))
        if m.split is not None:
            costs.append(
                eta.split_cost(s.height, s.width, s.iterations, windows, m.split, 1 + n_styles)
            )
            continue
        gram = tiling.grid(s.height, s.width, m.gram_tile or m.tile, halo, align)
        gram_windows = tiling.window_areas(gram)
        costs.append(
            eta.scale_cost(s.height, s.width, s.iterations, windows, 1 + n_styles, gram_windows)
        )
    return costs


def cut_index(model: FeatureExtractor, pools: int) -> int:
    """The body index where a split after ``pools`` pooling layers cuts the network."""
    return tiling.pool_indices(model)[pools - 1]


def splits(
    model: FeatureExtractor, upto: int, content_layers: list[str]
) -> tuple[tuple[int, int], ...]:
    """(pooling layers, halo) of each split the job allows: a cut before its deepest
    layer and before every content layer (split.py runs content terms whole)."""
    if not tiling.can_tile(model):
        return ()
    pools = tiling.pool_indices(model)
    first_content = min((model.taps[k] for k in content_layers), default=upto + 1)
    return tuple(
        (n, tiling.halo(model, pools[n - 1]))
        for n in memory.SPLITS
        if n <= len(pools) and pools[n - 1] < min(upto, first_content)
    )


class Engine:
    """Style transfer with model and target caches; one ``run`` at a time per device."""

    def __init__(
        self,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        target_cache_size: int = 48,
        memory_budget: int | None = None,
        weights: WeightSource | None = None,
        max_models: int = 3,
    ):
        self.max_pixels = max_pixels
        # Bytes one job may peak at; None = memory.default_budget for the job's device.
        self.memory_budget = memory_budget
        self.targets = TargetCache(target_cache_size)
        self.weights = weights or WeightSource()  # a daemon passes WeightSource.for_daemon
        self.max_models = max(1, max_models)  # a VGG19 in float32 is ~80 MB, 548 MB whole
        self.models_loaded = 0  # how many times a model was built (cache misses)
        self._models: OrderedDict[tuple, FeatureExtractor] = OrderedDict()  # LRU, newest last
        # Seconds per ETA cost unit of the last job per (device, dtype): the next job's
        # ETA starts from it (eta.py).
        self._speeds: dict[tuple[str, torch.dtype], float] = {}
        self._lock = threading.Lock()
        limit_arenas()  # or torch's threads' malloc arenas overrun the budget (allocator.py)
        limit_primitive_cache()  # or oneDNN's cached convolutions do (the same)

    # -- models ---------------------------------------------------------------------------
    def model(
        self,
        extractor: str,
        weights: str,
        pooling: str,
        device: torch.device,
        upto: int,
        dtype: torch.dtype = torch.float32,
    ) -> FeatureExtractor:
        """The cached network truncated at ``upto`` (a deeper cached one serves too).

        Keyed by the weights' resolved identity, not their spelling; the least recently
        used model goes once ``max_models`` are held.
        """
        identity = self.weights.identity(weights)
        want = (extractor, identity, pooling, str(device), dtype)
        with self._lock:
            for (*key, depth), m in self._models.items():
                if tuple(key) == want and depth >= upto:
                    self._models.move_to_end((*key, depth))
                    return m
            model = load_extractor(extractor, weights, pooling, upto, self.weights)
            fmt = devices.memory_format(device)
            model = model.to(memory_format=fmt).to(device=device, dtype=dtype)
            for *key, depth in [k for k in self._models if tuple(k[:-1]) == want]:
                del self._models[(*key, depth)]  # a shallower copy of the same network
            self._models[(*want, upto)] = model
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            self.models_loaded += 1
            return model

    # -- the job --------------------------------------------------------------------------
    def run(
        self,
        content,
        styles,
        options: JobOptions | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        init_image=None,
        extra_terms: dict | None = None,
    ) -> StyleResult:
        """``extra_terms``: further loss terms (name -> function of the 0..255 RGB picture
        at the scale's size), as the sequence job's temporal term; see objective.py."""
        try:
            return self._run(content, styles, options, on_progress, cancel, init_image, extra_terms)
        except (RuntimeError, MemoryError) as exc:
            if isinstance(exc, MemoryError) or devices.is_out_of_memory(exc):
                raise ImpastoError(
                    f"out of memory: {str(exc).splitlines()[0][:200]}; try a smaller size",
                    OUT_OF_MEMORY,
                ) from exc
            raise
        finally:  # an idle daemon holds no more than its models (allocator.py)
            release_free_pages()

    def _run(
        self, content, styles, options, on_progress, cancel, init_image, extra_terms=None
    ) -> StyleResult:
        t0 = time.perf_counter()
        opts = check_options(options if options is not None else JobOptions())
        content_arr = imageops.as_rgba_array(content, "content")
        if styles is None or isinstance(styles, np.ndarray) or not isinstance(styles, list | tuple):
            styles = [styles]
        if not styles:
            raise ImpastoError("at least one style image is needed", BAD_IMAGE)
        if len(styles) > MAX_STYLES:
            raise ImpastoError(f"{len(styles)} style images; at most {MAX_STYLES}", BAD_IMAGE)
        style_arrs = [
            imageops.as_rgba_array(s, f"style {i + 1}" if len(styles) > 1 else "style")
            for i, s in enumerate(styles)
        ]
        try:
            blend = opts.blend_weights(len(style_arrs))
        except OptionsError as exc:
            raise ImpastoError(str(exc), BAD_OPTIONS) from exc
        init_arr = None
        if opts.init == "image":
            if init_image is None:
                raise ImpastoError(
                    "option 'init' is 'image' but no init image was given", BAD_OPTIONS
                )
            init_arr = imageops.as_rgba_array(init_image, "init")

        setup = self._setup(content_arr.shape[0], content_arr.shape[1], opts)
        model, device, dtype, plan, memory_plans = (
            setup.model,
            setup.device,
            setup.dtype,
            setup.plan,
            setup.memory,
        )
        content_layers, style_layers, need = setup.content_layers, setup.style_layers, setup.need
        t_setup = time.perf_counter() - t0

        run = _Run(
            self,
            opts,
            model,
            device,
            plan,
            content_arr,
            style_arrs,
            blend,
            init_arr,
            content_layers,
            style_layers,
            on_progress,
            cancel,
            t0,
            need,
            memory_plans,
            self._eta(setup, opts, len(style_arrs)),
        )
        run.extra_terms = dict(extra_terms or {})
        image, stop = run.execute()
        if (speed := run.eta.measured()) is not None:
            self._speeds[(str(device), dtype)] = speed
        elapsed = time.perf_counter() - t0
        return StyleResult(
            image=image,
            iterations=run.iteration,
            losses=run.last_losses,
            cancelled=stop == "cancelled",
            elapsed=elapsed,
            device=str(device),
            precision=str(dtype).removeprefix("torch."),
            stop_reason=stop or "done",
            timings={"setup": t_setup, "targets": run.target_time, "total": elapsed},
            memory=run.memory_summary(),
        )

    def _setup(self, height: int, width: int, opts: JobOptions) -> _Setup:
        """Everything decided before a job allocates: model, scales, memory plans."""
        content_layers, style_layers = job_layers(opts)
        upto = max(
            check_layers(opts.extractor, content_layers, "content_layers"),
            check_layers(opts.extractor, style_layers, "style_layers"),
        )
        device = devices.resolve_device(opts.device)
        devices.configure(device)
        out_h, out_w = imageops.output_size(height, width, opts.size, self.max_pixels)
        dtype = devices.compute_dtype(device, opts.precision)
        model = self.model(opts.extractor, opts.weights, opts.pooling, device, upto, dtype)
        need = min_side(model, upto)
        if min(out_h, out_w) < need:
            raise ImpastoError(
                f"output {out_w}x{out_h} is too small: {opts.extractor} needs at least "
                f"{need} px on each side",
                BAD_IMAGE,
            )
        n = schedule.n_scales(opts.stroke_scale, max(out_h, out_w), opts.scales)
        plan = scales_plan(out_h, out_w, opts.total_iterations(), n, need)
        memory_plans = self.memory_plans(plan, opts, model, device, dtype, upto, height * width)
        return _Setup(
            model, device, dtype, plan, memory_plans, content_layers, style_layers, need, upto
        )

    def preflight(self, height: int, width: int, options=None, n_styles: int = 1) -> dict:
        """What a job on a ``height`` x ``width`` content would do, without running it.

        For an editor's dialog before the run: the output size, the scales (size,
        iterations, tiles, split), the estimated peak memory against the budget, and the
        estimated seconds (at the speed of this engine's last job or ``calibrate`` on
        the same device and arithmetic, else a default speed). Raises the job's own
        errors (options, too_large_for_device), so a dialog can show them before
        submitting.
        """
        opts = check_options(options if options is not None else JobOptions())
        setup = self._setup(height, width, opts)
        estimate = self._eta(setup, opts, n_styles)
        return {
            "width": setup.plan[-1].width,
            "height": setup.plan[-1].height,
            "scales": [
                {
                    "width": s.width,
                    "height": s.height,
                    "iterations": s.iterations,
                    "tile": m.tile,
                    "split": m.split,  # tiles run only the first this many pooling blocks
                    "keep_pages": m.keep_pages,  # the heap reuses what a pass freed
                }
                for s, m in zip(setup.plan, setup.memory, strict=True)
            ],
            "memory_estimate": max(m.peak for m in setup.memory),
            "memory_budget": setup.memory[-1].budget,
            "seconds": estimate.total_before(),
            # the finest scale's iterations the time assumes when a flat loss ends the
            # job early (schedule.finishes), else None: all of them
            "finest_expected": estimate.finest_shortened,
            "speed_measured": (str(setup.device), setup.dtype) in self._speeds,
        }

    def calibrate(self, device: str = "auto", precision: str = "auto") -> StyleResult:
        """Run a small job so that this engine's speed on ``device`` is measured: an
        estimate before the first real job (``preflight``) is then this machine's, not
        ``eta.DEFAULT_SECONDS_PER_UNIT`` (the AMX figure: 0.60-0.73x of the real time on the
        2-core Zen 4 without AMX, 0.85-1.02x calibrated; bench/bench_calibrate.py). Loads the
        network the default layers need, so the next job starts at once. Under a small
        memory budget the job is smaller (down to 32 px), never refused for its size."""
        options = JobOptions(
            size=CALIBRATION_EDGE,
            iterations=CALIBRATION_ITERATIONS,
            scales=1,
            frames=0,
            device=device,
            precision=precision,
        )
        edge = CALIBRATION_EDGE
        while True:  # the largest square up to CALIBRATION_EDGE the memory budget allows
            try:
                self.preflight(edge, edge, options)
                break
            except ImpastoError as exc:
                if exc.code != TOO_LARGE_FOR_DEVICE or edge <= 32:
                    raise
                edge //= 2
                options = options.replace(size=edge)
        noise = np.random.default_rng(0).random((2, edge, edge, 3)).astype(np.float32)
        return self.run(noise[0], [noise[1]], options)

    def eta_costs(self, height: int, width: int, options, n_styles: int = 1) -> list[eta.ScaleCost]:
        """The ETA's cost of each scale of a job (bench/eta_replay.py replays runs on it)."""
        opts = check_options(options)
        return self._costs(self._setup(height, width, opts), n_styles)

    def _costs(self, setup: _Setup, n_styles: int) -> list[eta.ScaleCost]:
        return scale_costs(setup.plan, setup.memory, setup.model, setup.upto, n_styles)

    def _eta(self, setup: _Setup, opts: JobOptions, n_styles: int) -> eta.Eta:
        """A job's ETA before it runs: its scales' costs at this engine's last speed."""
        last = setup.plan[-1]
        finest = schedule.finest_expected(
            opts.stroke_scale, max(last.height, last.width), opts.scales
        )
        prior = self._speeds.get((str(setup.device), setup.dtype))
        return eta.Eta(self._costs(setup, n_styles), prior, finest)

    def budget(self, device: torch.device, opts: JobOptions) -> int:
        """The job's memory budget in bytes: the engine's (or the device's default),
        lowered, never raised, by the job's ``memory_budget`` option."""
        budget = self.memory_budget or memory.default_budget(device.type)
        if opts.memory_budget is not None:
            budget = min(budget, opts.memory_budget * memory.MB)
        return budget

    def memory_plans(
        self, plan, opts, model, device, dtype, upto, content_pixels: int
    ) -> list[memory.MemoryPlan]:
        """Per scale, whole or tiled and how much L-BFGS history, within the budget;
        raises too_large_for_device (naming a size that fits) before anything is allocated.
        ``content_pixels``: the content image's own size, which it keeps all job long."""
        tileable = tiling.can_tile(model)
        # On a GPU the runtime lives outside the budget (that is free memory), as does the
        # content handed over in host memory; the network's weights and cuDNN's workspace
        # remain.
        if device.type == "cpu":
            base = memory.BASE_BYTES + content_pixels * memory.INPUT_BYTES_PER_PX
        else:
            base = 300 * memory.MB
        limits = memory.Limits(
            dtype_name=str(dtype).removeprefix("torch."),
            budget=self.budget(device, opts),
            halo=tiling.halo(model, upto) if tileable else 0,
            align=tiling.alignment(model) if tileable else 1,
            can_tile=tileable,
            base=base,
            splits=splits(model, upto, job_layers(opts)[0] if opts.content_weight > 0 else []),
            can_keep_pages=device.type == "cpu" and can_keep_pages(),
        )
        plans = []
        for s in plan:
            p = memory.plan_scale(s.height, s.width, limits)
            if p is None:
                h, w = plan[-1].height, plan[-1].width
                raise memory.too_large(h, w, limits, device.type.upper())
            if opts.tile_size is not None and tileable and opts.tile_size < max(s.height, s.width):
                tile = max(limits.align, opts.tile_size // limits.align * limits.align)
                peak = memory.estimate(
                    s.height,
                    s.width,
                    limits.dtype_name,
                    tile,
                    limits.halo,
                    p.history,
                    limits.base,
                    limits.align,
                )
                p = memory.MemoryPlan(tile, p.history, peak, limits.budget)
            plans.append(p)
        return plans


@dataclass
class _Setup:
    model: FeatureExtractor
    device: torch.device
    dtype: torch.dtype
    plan: list[schedule.Scale]
    memory: list[memory.MemoryPlan]
    content_layers: list[str]
    style_layers: list[str]
    need: int  # smallest side the network accepts
    upto: int  # deepest body index used


class _Run:
    """The state of one job while it runs (kept out of Engine so Engine stays reentrant)."""

    def __init__(
        self,
        engine,
        opts,
        model,
        device,
        plan,
        content,
        styles,
        blend,
        init,
        content_layers,
        style_layers,
        on_progress,
        cancel,
        t0,
        min_side,
        memory_plans,
        eta_model,
    ):
        self.engine, self.opts, self.model, self.device = engine, opts, model, device
        self.memory_plans = memory_plans
        self.upto = max(model.taps[k] for k in [*content_layers, *style_layers])
        self.plan, self.blend, self.init = plan, blend, init
        self.content_layers, self.style_layers = content_layers, style_layers
        self.on_progress, self.cancel, self.t0 = on_progress, cancel, t0
        self.min_side = min_side
        self.content_rgb = imageops.to_tensor(content)
        self.alpha = imageops.to_tensor(content[:, :, 3:]) if content.shape[2] == 4 else None
        self.styles = [imageops.to_tensor(s) for s in styles]
        self.prep = model.preprocessing
        self.fmt = devices.memory_format(device)
        self.total = sum(s.iterations for s in plan)
        self.frames = self._frame_iterations(opts.frames, self.total)
        self.iteration = 0
        self.last_losses: dict[str, float] = {}
        self.target_time = 0.0
        self.eta = eta_model
        self._tick = 0.0  # when the last iteration (or target building) ended
        if opts.style_layer_weights is not None:
            self.layer_weights = dict(zip(style_layers, opts.style_layer_weights, strict=True))
        else:
            self.layer_weights = dict.fromkeys(style_layers, 1.0)
        self.levels_per_unit = 255.0 * self.prep.std[0] / self.prep.scale
        self.extra_terms: dict = {}  # set by Engine._run (the sequence job's temporal term)

    def memory_summary(self) -> dict[str, int]:
        p, s = self.memory_plans[-1], self.plan[-1]
        tiles = gram_tiles = 1
        if p.tile is not None:
            align = tiling.alignment(self.model)
            tiles = len(tiling.grid(s.height, s.width, p.tile, 0, align))
            gram_tiles = len(tiling.grid(s.height, s.width, p.gram_tile or p.tile, 0, align))
        return {
            "budget": p.budget,
            "estimate": p.peak,
            "tile": p.tile or 0,
            "tiles": tiles,
            "gram_tiles": gram_tiles,
            "split": p.split or 0,
            "history": p.history,
            "keep_pages": int(p.keep_pages),
        }

    @staticmethod
    def _frame_iterations(frames: int, total: int) -> set[int]:
        picks = {math.ceil(k * total / frames) for k in range(1, frames + 1)} if frames else set()
        return picks | {total}

    # -- inputs at a scale ----------------------------------------------------------------
    def _to_input(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.prep.to_input(rgb.to(self.device))

    def _features(self, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return self.model(x.contiguous(memory_format=self.fmt), layers)

    def _grams(self, x: torch.Tensor, tile: int | None) -> dict[str, torch.Tensor]:
        """A style image's Gram targets; tiled like the picture's pass 1 when the picture
        is tiled (its size follows the picture's)."""
        if tile is None or max(x.shape[-2:]) <= tile:
            return style_targets(self._features(x, self.style_layers), self.style_layers)
        halo, align = tiling.halo(self.model, self.upto), tiling.alignment(self.model)
        h, w = x.shape[-2:]
        tiles = tiling.grid(h, w, tile, halo, align)
        return tiling.tiled_grams(self.model, x, self.style_layers, tiles, self.fmt)

    def _objective(self, h: int, w: int, content_rgb: torch.Tensor, plan: memory.MemoryPlan):
        t = time.perf_counter()
        tile = plan.tile
        gram_tile = plan.gram_tile or tile
        tiles = gram_tiles = None
        if tile is not None:
            if self.extra_terms:  # the sequence job's temporal term has no tiled form yet
                raise ImpastoError(
                    f"animation frames of {w}x{h} px need tiling within the memory budget, "
                    "which animations do not support yet; choose a smaller size",
                    TOO_LARGE_FOR_DEVICE,
                )
            align = tiling.alignment(self.model)
            reach = self.upto if plan.split is None else cut_index(self.model, plan.split)
            tiles = tiling.grid(h, w, tile, tiling.halo(self.model, reach), align)
            halo = tiling.halo(self.model, self.upto)
            gram_tiles = tiling.grid(h, w, gram_tile or tile, halo, align)
        model_key = (
            self.model.name,
            self.opts.weights,
            self.opts.pooling,
            str(self.device),
            str(self.model.dtype),
        )
        x_content = self._to_input(content_rgb)
        content_targets = (
            None
            if tiles is not None
            else self.engine.targets.get_or_compute(
                ("content", model_key, tuple(self.content_layers), tensor_digest(content_rgb)),
                lambda: {
                    k: v.detach() for k, v in self._features(x_content, self.content_layers).items()
                },
            )
        )
        per_style = []
        need = self.min_side
        for style in self.styles:
            sh, sw = style.shape[-2:]
            sh, sw = imageops.fit_area(sh, sw, h * w * self.opts.style_scale**2)
            if sh * sw > self.engine.max_pixels:
                sh, sw = imageops.fit_area(sh, sw, self.engine.max_pixels)
            sh, sw = max(sh, need), max(sw, need)
            s = imageops.resize(style, sh, sw)
            if self.opts.preserve_colors == "match":
                s = colors.match_colors(s, content_rgb)
            key = ("style", model_key, tuple(self.style_layers), tensor_digest(s))
            x_style = self._to_input(s)
            per_style.append(
                self.engine.targets.get_or_compute(key, lambda x=x_style: self._grams(x, gram_tile))
            )
        if len(per_style) == 1:
            targets, offset = per_style[0], 0.0
        else:
            targets = blended_style_targets(per_style, self.blend)
            offset = style_constant(per_style, self.blend, targets, self.layer_weights)
        self.target_time += time.perf_counter() - t
        terms = {
            "style_targets": targets,
            "style_layer_weights": self.layer_weights,
            "content_weight": self.opts.content_weight,
            "style_weight": self.opts.effective_style_weight(),
            "tv_weight": self.opts.tv_weight,
            "style_offset": offset,
            "memory_format": self.fmt,
        }
        use_content = self.opts.content_weight > 0
        if tiles is not None and plan.split is not None:
            return SplitObjective(
                model=self.model,
                content_input=x_content if use_content else None,
                content_layers=self.content_layers,
                cut=cut_index(self.model, plan.split),
                tiles=tiles,
                interrupted=lambda: self._stop_reason() is not None,
                **terms,
            )
        if tiles is not None:
            return tiling.TiledObjective(
                model=self.model,
                content_input=x_content if use_content else None,
                content_layers=self.content_layers,
                tiles=tiles,
                gram_tiles=gram_tiles,
                interrupted=lambda: self._stop_reason() is not None,
                **terms,
            )
        assert content_targets is not None  # computed above whenever there are no tiles
        return Objective(
            model=self.model,
            content_targets=content_targets if use_content else {},
            extra_terms=self.extra_terms,
            **terms,
        )

    def _initial(self, h: int, w: int, content_rgb: torch.Tensor) -> torch.Tensor:
        if self.opts.init == "noise":
            gen = torch.Generator().manual_seed(
                self.opts.seed if self.opts.seed is not None else int(torch.randint(0, 2**31, (1,)))
            )
            rgb = (0.5 + 0.2 * torch.randn(1, 3, h, w, generator=gen)).clamp(0, 1)
            return self._to_input(rgb)
        if self.opts.init == "image":
            return self._to_input(imageops.resize(imageops.to_tensor(self.init), h, w))
        return self._to_input(content_rgb)

    # -- output ---------------------------------------------------------------------------
    def _picture(self, x: torch.Tensor, h: int, w: int, cap: int | None = None) -> np.ndarray:
        """Input-space tensor -> (H, W, C) array with colours and alpha handled."""
        rgb = self.prep.to_rgb(x.detach()).float().cpu().clamp_(0, 1)
        if (rgb.shape[-2], rgb.shape[-1]) != (h, w):
            rgb = imageops.resize(rgb, h, w).clamp(0, 1)
        if self.opts.preserve_colors == "luminance":
            rgb = colors.keep_luminance(rgb, self.content_rgb)
        if cap is not None and max(h, w) > cap:
            h, w = imageops.fit_long_edge(h, w, cap)
            rgb = imageops.resize(rgb, h, w)
        if self.alpha is not None:
            rgb = torch.cat([rgb, imageops.resize(self.alpha, h, w).clamp(0, 1)], dim=1)
        return imageops.to_array(rgb)

    def _stop_reason(self) -> str | None:
        if self.cancel is not None and self.cancel.cancelled:
            return "cancelled"
        limit = self.opts.time_limit
        if limit is not None and time.perf_counter() - self.t0 >= limit:
            return "time_limit"
        return None

    def _report(self, k: int, scale, x: torch.Tensor, losses: dict[str, float], force=False):
        if self.on_progress is None:
            return
        frame = self.iteration in self.frames or force
        if not frame and self.iteration % self.opts.progress_every:
            return
        elapsed = time.perf_counter() - self.t0
        eta = self.eta.remaining()
        image = self._picture(x, x.shape[-2], x.shape[-1], self.opts.frame_size) if frame else None
        self.on_progress(
            Progress(
                self.iteration,
                self.total,
                k + 1,
                len(self.plan),
                x.shape[-1],
                x.shape[-2],
                dict(losses),
                elapsed,
                max(0.0, eta),
                image,
            )
        )

    def _go_coarse(self, x: torch.Tensor, iterations: int) -> torch.Tensor:
        """Spend the job's remaining ``iterations`` coarse-to-fine (the probe found a
        slow start; schedule.PROBE_ITERATIONS); returns the picture shrunk to the new
        first scale."""
        out_h, out_w = self.plan[-1].height, self.plan[-1].width
        n = schedule.n_scales(schedule.PROBE_SWITCH_TO, max(out_h, out_w), None)
        self.plan = scales_plan(out_h, out_w, iterations, n, self.min_side)
        self.memory_plans = self.engine.memory_plans(
            self.plan,
            self.opts,
            self.model,
            self.device,
            self.model.dtype,
            self.upto,
            self.content_rgb.shape[-2] * self.content_rgb.shape[-1],
        )
        costs = scale_costs(self.plan, self.memory_plans, self.model, self.upto, len(self.styles))
        self.eta.replan(costs)
        return imageops.resize(x, self.plan[0].height, self.plan[0].width)

    def execute(self) -> tuple[np.ndarray, str | None]:
        """The scales, one after the other: the picture and why it stopped (None: done).

        The heap keeps freed pages while a scale so planned runs (allocator.py); the
        setting is the process's, so only a CPU job changes it, and gives it back."""
        try:
            return self._scales()
        finally:
            if self.device.type == "cpu":
                keep_freed_pages(False)

    def _scales(self) -> tuple[np.ndarray, str | None]:
        x = None
        stop = None
        out_h, out_w = self.plan[-1].height, self.plan[-1].width
        adaptive = self.opts.stroke_scale == "auto" and self.opts.scales is None
        o = self.opts
        probing = schedule.probes(o.stroke_scale, max(out_h, out_w), o.scales, self.total, o.init)
        finishing = schedule.finishes(o.stroke_scale, max(out_h, out_w), o.scales)
        carried = 0  # iterations a coarse scale left unused; the finest scale gets them
        k = 0
        while k < len(self.plan):
            scale = self.plan[k]
            h, w = scale.height, scale.width
            finest = k == len(self.plan) - 1
            release_free_pages()  # what the last scale left in the heap (allocator.py)
            if self.device.type == "cpu":
                keep_freed_pages(self.memory_plans[k].keep_pages)
            content_rgb = imageops.resize(self.content_rgb, h, w)
            objective = self._objective(h, w, content_rgb, self.memory_plans[k])
            if x is None:
                x = self._initial(h, w, content_rgb)
            elif tuple(x.shape[-2:]) != (h, w):
                x = imageops.upscale(x, h, w)
            del content_rgb  # the objective holds what it needs; 12 bytes a pixel freed
            self.eta.targets(k)
            self._tick = time.perf_counter()
            totals: list[float] = []
            styles: list[float] = []

            def after(i, xi, losses, stop, k=k, scale=scale, totals=totals, styles=styles):
                now = time.perf_counter()
                self.eta.iteration(k, now - self._tick)
                self._tick = now
                self.iteration += 1
                self.last_losses = losses
                totals.append(losses["total"])
                styles.append(losses["style"])
                if stop == "finished":
                    self.eta.finish()
                # A frame of the last picture on a real stop, not on a change of scale.
                self._report(k, scale, xi, losses, force=stop not in (None, *MOVES))

            def should_stop(
                finest=finest, totals=totals, styles=styles, probing=probing, adaptive=adaptive
            ):
                reason = self._stop_reason()
                if reason is None and adaptive and not finest and schedule.flattened(totals):
                    return "plateau"
                if reason is None and finishing and finest and schedule.finished(totals):
                    return "finished"
                # decided in the iteration after the probe's (``after`` records an
                # iteration's losses once should_stop has run)
                if reason is None and probing and len(styles) == schedule.PROBE_ITERATIONS:
                    return "coarser" if schedule.starts_slowly(styles) else None
                return reason

            iterations = scale.iterations + (carried if finest else 0)
            outcome = optimise_scale(
                x,
                objective,
                iterations,
                self.opts.optimizer,
                self.opts.learning_rate,
                self.levels_per_unit,
                should_stop,
                after,
                history=self.memory_plans[k].history,
            )
            x, stop = outcome.image, outcome.stop
            del objective  # its targets, not held while the next scale builds its own
            probing = False  # one look, at the first scale
            if stop == "coarser":  # start again coarse-to-fine
                x = self._go_coarse(x, scale.iterations - outcome.iterations)
                adaptive, k, stop = False, 0, None
                continue
            if stop == "finished":  # the finest scale's loss is flat: the picture is done
                stop = None
            if stop == "plateau":  # move up a scale early
                left = scale.iterations - outcome.iterations
                carried += left
                self.eta.reassign(k, len(self.plan) - 1, left)
                stop = None
            if stop:
                break
            k += 1
        assert x is not None  # the plan has at least one scale
        return self._picture(x, out_h, out_w), stop
