"""Seams: the picture's gradient across its tile borders against everywhere else.

    .venv/bin/python bench/bench_seams.py PICTURE --content tests/images/tubingen.jpg \\
        --size 2048 --iterations 50 --stroke fine [--budget-mb 3072]

The job is planned again (Engine.preflight with the same options and memory budget, on
the content's size) to find where the finest scale's tile cores meet. At each border the
median absolute difference between the two pixel rows or columns that meet there (RGB,
0..255, over the whole border's length) is compared with the same measure's median over every
other row or column of the picture, and with its neighbours within 16 px. Issue 13's
target: within 10% of elsewhere at every border. A seam would show as a border whose
ratio stands out from its neighbours; content crossing a border moves single ratios too,
so the table lists both references.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from impasto.daemon.engine import Engine, tiling
from impasto.daemon.engine.models import available_layers
from impasto.shared.options import JobOptions

NEIGHBOURS = 16


def profile(picture: np.ndarray, axis: int) -> np.ndarray:
    """Median |p[i] - p[i-1]| across index i along ``axis`` (1: columns, 0: rows).

    The median over the border's length, not the mean: a few strong edges that happen to
    cross one column moved the mean by 35% on the untouched tubingen photo at 1024 px,
    while a seam shifts every pixel along the border.
    """
    diff = np.abs(np.diff(picture.astype(np.float32), axis=axis)).mean(axis=2)
    return np.median(diff, axis=1 - axis)  # one value per border position i-1|i


def borders(content: Path, size: int, iterations: int, stroke: str, budget_mb: int):
    with Image.open(content) as im:
        width, height = im.size
    opts = JobOptions(size=size, iterations=iterations, stroke_scale=stroke)
    engine = Engine(memory_budget=budget_mb * 2**20)
    plan = engine.preflight(height, width, opts)
    finest = plan["scales"][-1]
    if finest["tile"] is None:
        return plan, [], []
    model = engine.model(
        "vgg19", "original", "avg", torch.device("cpu"), available_layers("vgg19")["conv5_1"]
    )
    tiles = tiling.grid(
        finest["height"], finest["width"], finest["tile"], 0, tiling.alignment(model)
    )
    ys = sorted({t.y0 for t in tiles} - {0})
    xs = sorted({t.x0 for t in tiles} - {0})
    return plan, ys, xs


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("picture", type=Path)
    ap.add_argument("--content", type=Path, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--iterations", type=int, required=True)
    ap.add_argument("--stroke", default="auto")
    ap.add_argument("--budget-mb", type=int, default=3072)
    args = ap.parse_args()
    picture = np.asarray(Image.open(args.picture).convert("RGB"))
    plan, ys, xs = borders(args.content, args.size, args.iterations, args.stroke, args.budget_mb)
    finest = plan["scales"][-1]
    if (finest["height"], finest["width"]) != picture.shape[:2]:
        sys.exit(
            f"the plan's finest scale is {finest['width']}x{finest['height']}, the "
            f"picture {picture.shape[1]}x{picture.shape[0]}: not this job's picture"
        )
    print(
        f"{args.picture.name}: {picture.shape[1]}x{picture.shape[0]}, "
        f"tile core {finest['tile']} px, borders at x={xs} y={ys}"
    )
    control = np.asarray(
        Image.open(args.content)
        .convert("RGB")
        .resize(picture.shape[1::-1], Image.Resampling.LANCZOS)
    )
    print(
        "\n| border | across it | picture's typical | ratio | neighbours' | ratio | "
        "content's ratio there | rows/columns further from typical |"
    )
    print("|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for name, axis, positions in (("x", 1, xs), ("y", 0, ys)):
        prof = profile(picture, axis)  # prof[i-1] is the step from i-1 to i
        others = np.delete(prof, [p - 1 for p in positions])
        cprof = profile(control, axis)
        for p in positions:
            near = [
                i - 1
                for i in itertools.chain(range(p - NEIGHBOURS, p), range(p + 1, p + NEIGHBOURS + 1))
                if 1 <= i < len(prof) + 1 and i not in positions
            ]
            across, typical, local = prof[p - 1], np.median(others), prof[near].mean()
            worst = max(worst, abs(across / typical - 1))
            c_ratio = cprof[p - 1] / np.median(np.delete(cprof, [q - 1 for q in positions]))
            # how ordinary this border is: the share of all positions that stray further
            further = float(np.mean(np.abs(others / typical - 1) >= abs(across / typical - 1)))
            print(
                f"| {name}={p} | {across:.2f} | {typical:.2f} | {across / typical:.3f} | "
                f"{local:.2f} | {across / local:.3f} | {c_ratio:.3f} | {further:.0%} |"
            )
    print(f"\nworst border against the picture's typical step: {worst:.1%} (target: 10%)")


if __name__ == "__main__":
    main()
