"""Seconds per iteration against the bare network, per size and arithmetic.

    .venv/bin/python bench/bench_iteration.py [--sizes 256 512] [--repeat 5]

For each size (4:3 picture, long edge given) and configuration (float32 or bfloat16
network; contiguous or channels-last activations), side by side in one process:

* bare: VGG19 up to conv5_1, forward and the input's gradient (``out.sum()``), nothing else;
* iteration: one engine iteration (the paper's layers, Gram matrices and losses, the
  gradient, an L-BFGS step with 20 curvature pairs and the clamp), as optimise_scale runs it.

Each figure is the median of ``--repeat`` timed repetitions after two warm-up ones; the
ratio iteration / bare is the overhead around the network (issue 13's target: 1.2x).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from impasto.daemon.engine.losses import style_targets
from impasto.daemon.engine.models import available_layers
from impasto.daemon.engine.objective import Objective
from impasto.daemon.engine.optimize import optimise_scale
from impasto.daemon.engine.weights import load_extractor
from impasto.shared.options import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS

IMAGES = Path(__file__).resolve().parent.parent / "tests" / "images"


def picture(name: str, h: int, w: int) -> torch.Tensor:
    img = Image.open(IMAGES / name).convert("RGB").resize((w, h))
    return torch.from_numpy(np.asarray(img, np.float32) / 255).permute(2, 0, 1)[None]


def timed(fn, repeat: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(size: int, dtype: torch.dtype, fmt: torch.memory_format, repeat: int) -> dict:
    model = load_extractor("vgg19", "original", "avg", available_layers("vgg19")["conv5_1"])
    model = model.to(dtype=dtype).to(memory_format=fmt)
    prep = model.preprocessing
    h, w = size * 3 // 4, size
    content = prep.to_input(picture("tubingen.jpg", h, w))
    style = prep.to_input(picture("starry_night.jpg", h, w))
    style_layers, content_layers = list(DEFAULT_STYLE_LAYERS), list(DEFAULT_CONTENT_LAYERS)
    with torch.no_grad():
        targets = style_targets(
            model(style.contiguous(memory_format=fmt), style_layers), style_layers
        )
        ctargets = model(content.contiguous(memory_format=fmt), content_layers)

    def bare() -> None:
        x = content.clone().requires_grad_(True)
        out = model.body(x.to(dtype).contiguous(memory_format=fmt))
        torch.autograd.grad(out.sum(), x)

    objective = Objective(
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

    def iterations(n: int) -> None:
        optimise_scale(content, objective, n, "lbfgs", None, levels, lambda: None, lambda *a: None)

    # L-BFGS's history fills over the first iterations: time 22 and 2, take the difference
    t_bare = timed(bare, repeat)
    t_long = timed(lambda: iterations(22), max(1, repeat // 3))
    t_short = timed(lambda: iterations(2), max(1, repeat // 3))
    per = (t_long - t_short) / 20
    return {"bare": t_bare, "iteration": per}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    configs = [
        ("float32", torch.float32, torch.contiguous_format),
        ("float32 channels_last", torch.float32, torch.channels_last),
        ("bfloat16", torch.bfloat16, torch.contiguous_format),
        ("bfloat16 channels_last", torch.bfloat16, torch.channels_last),
    ]
    print(f"torch threads: {torch.get_num_threads()}\n")
    print("| long edge | arithmetic | bare fwd+bwd s | engine iteration s | ratio |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        for name, dtype, fmt in configs:
            r = measure(size, dtype, fmt, args.repeat)
            print(
                f"| {size} | {name} | {r['bare']:.3f} | {r['iteration']:.3f} | "
                f"{r['iteration'] / r['bare']:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
