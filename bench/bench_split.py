"""One scale's pass planned three ways, side by side: seconds and memory per iteration.

    .venv/bin/python bench/bench_split.py [--size 2048] [--plans whole split:2:512 ...]
        [--iterations 2] [--precision bfloat16] [--parallel 2]

Each plan runs in a fresh process with one thread (``--parallel`` of them at a time, so
a 2-core machine compares two at once under the same load) on tests/images
tubingen/starry_night at ``--size`` px, pastiche's objective (content 0.01 on conv4_2,
style 10 on conv1_1…conv5_1), the picture a little away from the content. Plans:

* ``whole``: ``Objective``, the network over the whole picture;
* ``split:P:CORE``: ``SplitObjective``, the blocks up to the P-th pooling layer in tiles
  of CORE px, the rest over the whole picture;
* ``tiled:CORE``: ``TiledObjective``, the whole network in tiles of CORE px.

The table gives each iteration's seconds and how far RSS rose during it over RSS as it
began, per pixel of the picture; for the split, also the rise during its deep part
(per picture pixel) and during its tiles (per pixel of the largest tile window). These
are the figures behind memory.SPLIT_DEEP_BYTES_PER_PX, SPLIT_TILE_BYTES_PER_PX and
eta.SPLIT_SHARE.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench_memory import IMAGES, current_rss

STYLE_LAYERS = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]


def child(size: int, plan: str, iterations: int, precision: str) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from impasto.daemon.engine import tiling
    from impasto.daemon.engine.losses import style_targets
    from impasto.daemon.engine.objective import Objective
    from impasto.daemon.engine.split import SplitObjective
    from impasto.daemon.engine.weights import load_extractor

    torch.set_num_threads(1)
    peak = [0]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], current_rss())
            time.sleep(0.003)

    threading.Thread(target=sample, daemon=True).start()
    fmt, dtype = torch.channels_last, getattr(torch, precision)
    model = load_extractor("vgg19", "original", "avg", 29).to(memory_format=fmt).to(dtype=dtype)

    def picture(name: str, long_edge: int) -> torch.Tensor:
        im = Image.open(IMAGES / name).convert("RGB")
        scale = long_edge / max(im.size)
        w, h = round(im.width * scale), round(im.height * scale)
        a = np.asarray(im.resize((w, h)), np.float32) / 255
        return model.preprocessing.to_input(torch.from_numpy(a).permute(2, 0, 1)[None])

    content = picture("tubingen.jpg", size)
    height, width = content.shape[-2:]
    with torch.no_grad():
        style = picture("starry_night.jpg", min(size, 1024)).contiguous(memory_format=fmt)
        targets = style_targets(model(style, STYLE_LAYERS), STYLE_LAYERS)
    del style
    weights = dict.fromkeys(STYLE_LAYERS, 0.2)
    marks: list[int] = []

    def mark() -> bool:  # SplitObjective checks this after its first pass and per tile
        marks.append(peak[0])
        peak[0] = current_rss()
        return False

    terms = (model, content, ["conv4_2"], targets, weights, 0.01, 10.0, 0.0)  # pastiche's
    kind, *args = plan.split(":")
    window = height * width
    if kind == "whole":
        with torch.no_grad():
            c = model(content.contiguous(memory_format=fmt), ["conv4_2"])
        objective = Objective(model, c, *terms[3:], memory_format=fmt)
    elif kind == "split":
        cut = tiling.pool_indices(model)[int(args[0]) - 1]
        tiles = tiling.grid(height, width, int(args[1]), tiling.halo(model, cut), 16)
        window = max(tiling.window_areas(tiles))
        objective = SplitObjective(*terms, tiles, memory_format=fmt, interrupted=mark, cut=cut)
    else:
        tiles = tiling.grid(height, width, int(args[0]), tiling.halo(model, 29), 16)
        window = max(tiling.window_areas(tiles))
        objective = tiling.TiledObjective(*terms, tiles, memory_format=fmt)
    x = content + 5 * torch.randn(content.shape, generator=torch.Generator().manual_seed(0))
    runs = []
    for _ in range(iterations):
        marks.clear()
        before = current_rss()
        peak[0] = before
        t = time.perf_counter()
        grad, _losses = objective.value_and_grad(x)
        seconds = time.perf_counter() - t
        marks.append(peak[0])
        run = {"s": seconds, "rise": (max(marks) - before) / (height * width)}
        if kind == "split":  # marks: after the first pass, after the deep part, per tile
            run["deep"] = (marks[1] - before) / (height * width)
            run["tiles"] = (max(marks[2:]) - before) / window
        runs.append(run)
        del grad
    n_tiles = len(getattr(objective, "tiles", [None]))
    return {"plan": plan, "tiles": n_tiles, "window": window, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument(
        "--plans", nargs="+", default=["whole", "split:2:512", "split:3:512", "tiled:496"]
    )
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--precision", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.size, args.child, args.iterations, args.precision)))
        return

    def run(plan: str) -> dict:
        cmd = [sys.executable, __file__, "--child", plan, "--size", str(args.size)]
        cmd += ["--iterations", str(args.iterations), "--precision", args.precision]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return {"plan": plan, "error": proc.stderr.strip()[-300:]}

    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(run, args.plans))
    print(f"{args.size} px, {args.precision}, one thread per plan, {args.parallel} at a time\n")
    print("| plan | tiles | s per iteration | rise B/px | deep part B/px | tiles B/window px |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['plan']} | failed: {r['error']} |")
            continue
        runs = r["runs"]

        def cells(key: str, runs=runs) -> str:
            return " / ".join(f"{x[key]:.0f}" for x in runs) if key in runs[0] else ""

        secs = " / ".join(f"{x['s']:.1f}" for x in runs)
        print(
            f"| {r['plan']} | {r['tiles']} | {secs} | {cells('rise')} | {cells('deep')} "
            f"| {cells('tiles')} |"
        )
    print("\n(iterations in order: the first grows the heap)")


if __name__ == "__main__":
    main()
