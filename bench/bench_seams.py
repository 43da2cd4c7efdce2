"""Seams: the picture's gradient across its tile borders against everywhere else.

    .venv/bin/python bench/bench_seams.py PICTURE --content tests/images/tubingen.jpg \\
        --size 2048 --iterations 50 --stroke fine [--budget-mb 3072] [--tile-size PX] \\
        [--untiled PICTURE2]

The job is planned again (Engine.preflight with the same options and memory budget, on
the content's size) to find where the finest scale's tile cores meet. At each border the
median absolute difference between the two pixel rows or columns that meet there (RGB,
0..255, over the whole border's length) is compared with the same measure's median over every
other row or column of the picture, and with its neighbours within 16 px. Issue 13's
target: within 10% of elsewhere at every border. A seam would show as a border whose
ratio stands out from its neighbours; content crossing a border moves single ratios too,
so the table lists both references.

``--untiled PICTURE2``: the same job run in one piece (a budget it fits in). Then each
border's step in the tiled picture is divided by the untiled picture's step at the same
place, by the median and by the mean (the issue's "mean gradient magnitude"): content
and style cross both pictures alike, so a seam is what would lift this ratio above 1,
and the same ratio at every other row or column shows how far the two runs drift apart
anyway (bfloat16 rounds the tiled sums differently, and L-BFGS amplifies it).
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


def profile(picture: np.ndarray, axis: int, stat=np.median) -> np.ndarray:
    """Median |p[i] - p[i-1]| across index i along ``axis`` (1: columns, 0: rows).

    The median over the border's length, not the mean: a few strong edges that happen to
    cross one column moved the mean by 35% on the untouched tubingen photo at 1024 px,
    while a seam shifts every pixel along the border.
    """
    diff = np.abs(np.diff(picture.astype(np.float32), axis=axis)).mean(axis=2)
    return stat(diff, axis=1 - axis)  # one value per border position i-1|i


def borders(
    content: Path, size: int, iterations: int, stroke: str, budget_mb: int, tile: int | None
):
    with Image.open(content) as im:
        width, height = im.size
    opts = JobOptions(size=size, iterations=iterations, stroke_scale=stroke, tile_size=tile)
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
    ap.add_argument("--tile-size", type=int, help="the job's forced tile core, if it had one")
    ap.add_argument("--untiled", type=Path, help="the same job's picture made in one piece")
    args = ap.parse_args()
    picture = np.asarray(Image.open(args.picture).convert("RGB"))
    plan, ys, xs = borders(
        args.content, args.size, args.iterations, args.stroke, args.budget_mb, args.tile_size
    )
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
    table_head(
        "border | across it | picture's typical | ratio | neighbours' | ratio | "
        "content's ratio there | rows/columns further from typical"
    )
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
    if args.untiled:
        against_untiled(picture, np.asarray(Image.open(args.untiled).convert("RGB")), xs, ys)


def table_head(columns: str) -> None:
    """A Markdown table's head from ``"a | b | c"``."""
    print(f"\n| {columns} |")
    print("|" + "---|" * (columns.count("|") + 1))


def against_untiled(tiled: np.ndarray, untiled: np.ndarray, xs: list[int], ys: list[int]):
    """Each border's step in the tiled picture over the untiled one's at the same place."""
    if tiled.shape != untiled.shape:
        sys.exit(
            f"the untiled picture is {untiled.shape[1]}x{untiled.shape[0]}, not the same job's"
        )
    table_head(
        "border | tiled / untiled (median) | (mean) | other rows/columns: median deviation "
        "of the mean ratio | 95th percentile | share further than this border"
    )
    worst = 0.0
    for name, axis, positions in (("x", 1, xs), ("y", 0, ys)):
        ratio = {
            stat.__name__: profile(tiled, axis, stat)
            / np.maximum(profile(untiled, axis, stat), 1e-6)
            for stat in (np.median, np.mean)
        }
        others = np.abs(np.delete(ratio["mean"], [p - 1 for p in positions]) - 1)
        for p in positions:
            dev = abs(ratio["mean"][p - 1] - 1)
            worst = max(worst, dev)
            print(
                f"| {name}={p} | {ratio['median'][p - 1]:.3f} | {ratio['mean'][p - 1]:.3f} | "
                f"{np.median(others):.3f} | {np.percentile(others, 95):.3f} | "
                f"{np.mean(others >= dev):.0%} |"
            )
    print(f"\nworst border, mean step against the untiled picture's: {worst:.1%} (target: 10%)")


if __name__ == "__main__":
    main()
