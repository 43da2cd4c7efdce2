"""Animation benchmark: temporal stability, style loss and cost of the sequence job.

    PYTHONPATH=. .venv/bin/python bench/bench_sequence.py [--size 96] [--frames 5]
        [--iterations 60] [--warm 12,18,30] [--layers shallow|paper] [--no-write]

On the synthetic pan-and-zoom with a moving object (tests/sequence_data.py, whose true
flow and occlusions are known), one run each, sequentially in one process:

1. a still image: frame 1 on its own (the cost a frame would have without a sequence);
2. every frame stylised independently with the same settings;
3. the stable sequence (warped init + temporal term) with each warm-frame budget given.

Instability is the issue's measure: mean |frame t − frame t−1 warped by the true flow|
over reliable pixels, in 0..255 levels. Style ratio is each frame's style loss over the
independent run's (mean and worst frame). Prints a Markdown table, writes it to the
``## Animation`` section of BENCHMARKS.md and a side-by-side GIF (independent | stable)
to docs/images/sequence_independent_vs_stable.gif.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from impasto.daemon.engine import Engine, schedule  # noqa: E402
from impasto.daemon.engine.sequence import stylise_sequence  # noqa: E402
from impasto.shared.options import JobOptions  # noqa: E402
from impasto.shared.sequence import SequenceOptions  # noqa: E402
from tests.sequence_data import instability, make_sequence  # noqa: E402

IMAGES = Path(os.environ.get("IMPASTO_TEST_IMAGES", REPO / "tests" / "images"))
GIF = REPO / "docs" / "images" / "sequence_independent_vs_stable.gif"
LAYERS = {
    "shallow": {"style_layers": ["conv1_1", "conv2_1", "conv3_1"], "content_layers": ["conv2_2"]},
    "paper": {},
}


def work(height: int, width: int, iterations: int, scales: int | None) -> float:
    """Pixel-iterations of a run, as the engine's ETA counts them (4096 ~ fixed cost)."""
    return sum(
        (s.height * s.width + 4096) * s.iterations
        for s in schedule.plan(height, width, iterations, scales)
    )


def run_sequence(engine, seq, style, opts, sequence):
    t0 = time.perf_counter()
    done = list(stylise_sequence(engine, seq.frames, [style], opts, sequence))
    return done, time.perf_counter() - t0


def side_by_side(left, right, path: Path, scale: int = 2) -> None:
    pictures = []
    for a, b in zip(left, right, strict=True):
        both = np.concatenate([a[..., :3], np.ones_like(a[:, :4, :3]), b[..., :3]], axis=1)
        img = Image.fromarray(np.round(both * 255).astype(np.uint8))
        pictures.append(
            img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=150, loop=0)


def write_section(table: str) -> None:
    bench = REPO / "BENCHMARKS.md"
    text = bench.read_text() if bench.exists() else "# Benchmarks\n"
    section = "## Animation\n\n" + table.strip() + "\n"
    if "## Animation\n" in text:
        text = re.sub(r"## Animation\n.*?(?=\n## |\Z)", section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    bench.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=96, help="frame width (height is 3/4)")
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=60, help="first frame's budget")
    ap.add_argument("--warm", default="12,18,30", help="warm-frame budgets to try")
    ap.add_argument("--layers", choices=tuple(LAYERS), default="shallow")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    seq = make_sequence(args.frames, args.size, args.size * 3 // 4)
    style_img = Image.open(IMAGES / "starry_night.jpg").convert("RGB")
    style_img = style_img.resize((args.size, round(args.size * 640 / 1024)))
    style = np.asarray(style_img, dtype=np.float32) / 255
    opts = JobOptions(size=None, iterations=args.iterations, frames=0, **LAYERS[args.layers])
    engine = Engine()
    engine.run(seq.frames[0], [style], opts.replace(iterations=2))  # load the model once

    t0 = time.perf_counter()
    engine.run(seq.frames[0], [style], opts)
    still_s = time.perf_counter() - t0
    independent, ind_s = run_sequence(engine, seq, style, opts, SequenceOptions(independent=True))
    ind_images = [f.result.image for f in independent]
    ind_style = np.array([f.result.losses["style"] for f in independent])
    base = instability(ind_images, seq)
    n = len(seq.frames)
    h, w = seq.frames[0].shape[:2]
    still_work = work(h, w, args.iterations, None)
    rows = [
        f"| still image (frame 1) | {args.iterations} | | | | 1.00 | {still_s:.1f} |",
        f"| independent frames | {args.iterations} | {base:.2f} | 1.00 | 1.00 / 1.00 "
        f"| 1.00 | {ind_s / n:.1f} |",
    ]
    best = None
    for warm in [int(w) for w in args.warm.split(",")]:
        stable, st_s = run_sequence(engine, seq, style, opts, SequenceOptions(warm_iterations=warm))
        images = [f.result.image for f in stable]
        ratios = np.array([f.result.losses["style"] for f in stable]) / ind_style
        value = instability(images, seq)
        warm_s = sum(f.result.elapsed for f in stable[1:]) / (n - 1)
        warm_work = work(h, w, warm, 1) / still_work
        rows.append(
            f"| stable, warm frames {warm} it. | {args.iterations} then {warm} | {value:.2f} "
            f"| {base / value:.2f} | {ratios.mean():.2f} / {ratios.max():.2f} "
            f"| {warm_work:.2f} | {st_s / n:.1f} (warm {warm_s:.1f}) |"
        )
        print(rows[-1], flush=True)
        if best is None or warm == SequenceOptions().warm_budget(args.iterations):
            best = images
    header = (
        f"{n} frames of {args.size}x{args.size * 3 // 4} (tests/sequence_data.py: pan, zoom, "
        f"moving object), style starry_night, {args.layers} layers, "
        f"{platform.machine()} {os.cpu_count()} cores, `bench/bench_sequence.py "
        f"--size {args.size} --frames {args.frames} --iterations {args.iterations} "
        f"--warm {args.warm} --layers {args.layers}`.\n\n"
        "| run | iterations per frame | instability (0..255) | stability ratio "
        "| style loss ratio mean / worst | work per warm frame vs still | s per frame |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    note = (
        "\nWork is pixel-iterations as the engine's ETA counts them (a warm frame runs at "
        "the output size only; a still image runs with its own schedule: one scale at this "
        "size); seconds are wall time "
        "on the machine as it was, and move with its load.\n"
    )
    table = header + "\n".join(rows) + "\n" + note
    print(table)
    if not args.no_write:
        write_section(table)
        side_by_side(ind_images, best, GIF)
        print(f"wrote BENCHMARKS.md and {GIF.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
