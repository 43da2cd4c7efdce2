"""Seconds per engine iteration against the bare network, per size and arithmetic.

    .venv/bin/python bench/bench_iteration.py [--sizes 256 512 1024] [--repeat 5]
        [--configs bf16-cl fp32-cl ...] [--profile 512]

For each size (4:3 picture, long edge given) and configuration (float32 or bfloat16
network; contiguous or channels-last activations), in one process:

* bare: VGG19 up to conv5_1, forward and the input's gradient (from a dense all-ones
  output gradient), nothing else;
* iteration: one engine iteration as optimise_scale runs it: the objective's loss and
  gradient (the paper's layers, Gram matrices, content and TV terms) and the L-BFGS step
  with a full history of 20 curvature pairs, then the clamp.

The two alternate (bare, iteration, bare, iteration, ...) after one warm-up pair, so a
load change on a shared machine hits both; each figure is the best of ``--repeat``. The
ratio iteration / bare is the overhead around the network (issue 13's target: 1.2x).

The heap keeps freed pages (allocator.keep_freed_pages), as the engine has it for a
whole-picture scale its budget has room for; ``--return-pages`` measures glibc's
default instead, which maps and faults in every large tensor in every pass.

``--profile SIZE`` adds torch.profiler's self CPU time of one bfloat16 channels-last
iteration at that size, by group, next to the bare pass's: shares within one profile
hold up on a loaded machine where seconds do not.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile, record_function

from impasto.daemon.engine.allocator import keep_freed_pages
from impasto.daemon.engine.lbfgs import LBFGS
from impasto.daemon.engine.losses import style_targets
from impasto.daemon.engine.models import available_layers
from impasto.daemon.engine.objective import Objective
from impasto.daemon.engine.optimize import LBFGS_FIRST_STEP, LBFGS_HISTORY, LBFGS_MAX_STEP
from impasto.daemon.engine.weights import load_extractor
from impasto.shared.options import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS

IMAGES = Path(__file__).resolve().parent.parent / "tests" / "images"
CONFIGS = {
    "fp32": (torch.float32, torch.contiguous_format),
    "fp32-cl": (torch.float32, torch.channels_last),
    "bf16": (torch.bfloat16, torch.contiguous_format),
    "bf16-cl": (torch.bfloat16, torch.channels_last),
}
# Profiler op names that are the network's own work (what the bare pass runs too).
NETWORK_OPS = {
    "aten::mkldnn_convolution": "convolution",
    "mkldnn::_convolution_pointwise": "convolution",  # models.ConvReLU, ReLU fused in
    "aten::convolution_backward": "convolution",
    "_ConvReLUFunctionBackward": "convolution",
    "aten::clamp_min_": "ReLU and pooling",
    "aten::threshold_backward": "ReLU and pooling",
    "aten::avg_pool2d": "ReLU and pooling",
    "aten::avg_pool2d_backward": "ReLU and pooling",
    "aten::fill_": "ReLU and pooling",  # torch's pooling backward zeroes its gradient
    "aten::upsample_nearest2d": "ReLU and pooling",  # models.HalvingAverage's backward
}
GRAM_OPS = {"aten::mm", "aten::addmm", "aten::addmm_"}


def picture(name: str, h: int, w: int) -> torch.Tensor:
    img = Image.open(IMAGES / name).convert("RGB").resize((w, h))
    return torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)[None]


class Setup:
    """The network, the objective and a primed L-BFGS at one size and configuration."""

    def __init__(self, size: int, dtype: torch.dtype, fmt: torch.memory_format):
        model = load_extractor("vgg19", "original", "avg", available_layers("vgg19")["conv5_1"])
        self.model = model.to(memory_format=fmt).to(dtype=dtype)
        self.dtype, self.fmt = dtype, fmt
        prep = model.preprocessing
        h, w = size * 3 // 4, size
        self.content = prep.to_input(picture("tubingen.jpg", h, w))
        style = prep.to_input(picture("starry_night.jpg", h, w))
        style_layers, content_layers = list(DEFAULT_STYLE_LAYERS), list(DEFAULT_CONTENT_LAYERS)
        with torch.no_grad():
            targets = style_targets(
                model(style.contiguous(memory_format=fmt), style_layers), style_layers
            )
            ctargets = model(self.content.contiguous(memory_format=fmt), content_layers)
        self.objective = Objective(
            model,
            ctargets,
            targets,
            dict.fromkeys(style_layers, 1.0),
            0.05,
            10.0,
            2.0,
            memory_format=fmt,
        )
        levels = 255.0 * prep.std[0] / prep.scale
        self.lo, self.hi = prep.bounds(self.content)
        self.lbfgs = LBFGS(LBFGS_HISTORY, 1.0, LBFGS_FIRST_STEP / levels, LBFGS_MAX_STEP / levels)
        # A full history, as after 20 iterations: steps on a quadratic bowl around the content.
        x = self.content.clone()
        for _ in range(LBFGS_HISTORY + 1):
            x = self.lbfgs.step(x, (x - self.content) * 1e-3 + 1e-4).clamp_(self.lo, self.hi)
        self.x = self.content.clone()

    def bare(self) -> None:
        x = self.content.clone().requires_grad_(True)
        out = self.model.body(x.to(self.dtype).contiguous(memory_format=self.fmt))
        # A dense gradient in the output's layout, like a loss's (out.sum()'s is a
        # broadcast scalar, which oneDNN's backward first copies out).
        torch.autograd.grad(out, x, torch.ones_like(out))

    def iteration(self) -> None:
        """optimise_scale's loop body: loss and gradient, L-BFGS step, clamp."""
        with record_function("objective"):
            grad, _ = self.objective.value_and_grad(self.x)
        assert grad is not None
        with record_function("step"):
            self.x = self.lbfgs.step(self.x, grad).clamp_(self.lo, self.hi)


def interleaved(setup: Setup, repeat: int) -> tuple[float, float]:
    """Best seconds of the bare pass and of an iteration, measured alternately."""
    bare, it = [], []
    for i in range(repeat + 1):
        t = time.perf_counter()
        setup.bare()
        t1 = time.perf_counter()
        setup.iteration()
        t2 = time.perf_counter()
        if i:  # the first pair warms oneDNN's caches up
            bare.append(t1 - t)
            it.append(t2 - t1)
    return min(bare), min(it)


def self_times(fn, runs: int) -> tuple[dict[str, float], dict[str, float]]:
    """Self CPU seconds per run, by op name and by the record_function scope above it."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            fn()
    by_op = {e.key: e.self_cpu_time_total / 1e6 / runs for e in prof.key_averages()}
    scoped: dict[str, float] = defaultdict(float)
    for scope in ("step",):
        scoped[scope] = sum(
            e.cpu_time_total / 1e6 / runs for e in prof.events() or [] if e.name == scope
        )
    return by_op, scoped


def breakdown(size: int) -> None:
    setup = Setup(size, torch.bfloat16, torch.channels_last)
    for _ in range(2):  # warm up both
        setup.bare()
        setup.iteration()
    bare_ops, _ = self_times(setup.bare, 2)
    ops, scoped = self_times(setup.iteration, 3)
    ops = {k: v for k, v in ops.items() if k not in ("objective", "step")}
    groups: dict[str, float] = defaultdict(float)
    for name, t in ops.items():
        groups[NETWORK_OPS.get(name, "Gram products" if name in GRAM_OPS else "other")] += t
    groups["L-BFGS step and clamp"] = scoped["step"]
    groups["other"] -= scoped["step"]
    total = sum(ops.values())
    bare_total = sum(bare_ops.values())
    print(f"\nProfile, bfloat16 channels-last, {size} px, threads {torch.get_num_threads()}:")
    print(f"one iteration {total:.3f} s of self CPU time, the bare pass {bare_total:.3f} s\n")
    print("| group | s per iteration | share |")
    print("|---|---|---|")
    for name in (
        "convolution",
        "ReLU and pooling",
        "Gram products",
        "L-BFGS step and clamp",
        "other",
    ):
        print(f"| {name} | {groups[name]:.3f} | {groups[name] / total:.1%} |")
    network = groups["convolution"] + groups["ReLU and pooling"]
    print(f"\niteration / network ops: {total / network:.2f}x\n")
    print("Largest ops outside the network, s per iteration (bare pass's in brackets):")
    rest = sorted(
        ((t, n) for n, t in ops.items() if n not in NETWORK_OPS and t > 0.002 * total), reverse=True
    )
    for t, name in rest[:12]:
        print(f"  {name}: {t:.4f} ({bare_ops.get(name, 0.0):.4f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", type=int, default=None, metavar="SIZE")
    ap.add_argument("--return-pages", action="store_true", help="glibc's default: unmap")
    args = ap.parse_args()
    kept = not args.return_pages and keep_freed_pages(True)
    print(f"freed pages: {'kept' if kept else 'returned'}")
    print(f"torch threads: {torch.get_num_threads()}\n")
    print("| long edge | arithmetic | bare fwd+bwd s | engine iteration s | ratio |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        for name in args.configs:
            bare, it = interleaved(Setup(size, *CONFIGS[name]), args.repeat)
            print(f"| {size} | {name} | {bare:.3f} | {it:.3f} | {it / bare:.2f}x |", flush=True)
    if args.profile:
        breakdown(args.profile)


if __name__ == "__main__":
    main()
