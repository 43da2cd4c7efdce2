"""Schedules scored against the clock by several judges, and the ETA's error over each run.

    .venv/bin/python bench/bench_schedule.py --size 256 --iterations 150 \\
        [--pairs tubingen:starry_night astronaut:picasso_selfport1907 ...] \\
        [--strokes fine medium large auto] [--out /tmp/schedule_256.json] [--plot x.png]

Every run optimises pastiche's objective (content 0.01, style 10, no TV; the issue's
setting) with a fresh Engine, saving a frame each iteration with its time since the run
began (setup and model loading included). About 12 frames per run, spaced in time, are
then scored by two judges: the original VGG19 with average pooling (what the optimiser
uses) and with max pooling (what it never sees), style and content apart; "objective"
is the average-pooled total. The tables give, at fractions of the single-scale ("fine")
run's time, each schedule's scores (the last frame before that time); a schedule "wins"
where it is no worse than "fine" on style *and* content of the max-pooled judge.

The ETA part: for every run, the error of the predicted end (elapsed + ETA) against the
real end, over the run; the target is within 25% from 10% of the run on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_evaluator import CONTENT_WEIGHT, STYLE_WEIGHT, Evaluator

from impasto.daemon.engine import Engine
from impasto.shared.options import JobOptions

IMAGES = Path(__file__).resolve().parent.parent / "tests" / "images"
EXT = {p.stem: p for p in IMAGES.iterdir() if p.suffix in (".jpg", ".png")}
DEFAULT_PAIRS = [
    "tubingen:starry_night",
    "astronaut:picasso_selfport1907",
    "chelsea:seated-nude",
    "rocket:starry_night",
]
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
SCORED_FRAMES = 12


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255


def run(content: Path, style: Path, size: int, iterations: int, stroke: str) -> dict:
    frames: list[tuple[float, np.ndarray]] = []
    etas: list[tuple[float, float]] = []

    def on_progress(p) -> None:
        etas.append((p.elapsed, p.eta))
        if p.image is not None:
            frames.append((p.elapsed, p.image))

    opts = JobOptions(
        size=size,
        iterations=iterations,
        stroke_scale=stroke,
        content_weight=CONTENT_WEIGHT,
        style_weight=STYLE_WEIGHT,
        tv_weight=0.0,
        frames=iterations,
        seed=0,
    )
    t = time.perf_counter()
    result = Engine().run(rgb(content), [rgb(style)], opts, on_progress=on_progress)
    end = time.perf_counter() - t
    picks = np.unique(np.geomspace(1, len(frames), SCORED_FRAMES).astype(int) - 1)
    return {
        "stroke": stroke,
        "end": end,
        "frames": [frames[i] for i in picks],
        "etas": etas,
        "memory": result.memory,
    }


def eta_errors(etas: list[tuple[float, float]], end: float) -> dict[str, float]:
    """Worst |predicted end − real end| / real end after each fraction of the run."""
    out = {}
    for frac in (0.1, 0.25, 0.5):
        errs = [abs(e + eta - end) / end for e, eta in etas if e >= frac * end]
        out[f"from {frac:.0%}"] = max(errs) if errs else float("nan")
    return out


def score(runs: list[dict], content: Path, style: Path) -> None:
    h, w = runs[0]["frames"][-1][1].shape[:2]
    judges = {pool: Evaluator(content, style, w, h, pooling=pool) for pool in ("avg", "max")}
    for r in runs:
        r["scores"] = []
        for t, img in r.pop("frames"):
            row = {"t": t}
            for pool, judge in judges.items():
                loss = judge.loss(img)
                row[f"{pool}_style"], row[f"{pool}_content"] = loss["style"], loss["content"]
            row["objective"] = row["avg_style"] + row["avg_content"]
            r["scores"].append(row)


def at(r: dict, t: float) -> dict | None:
    before = [s for s in r["scores"] if s["t"] <= t]
    return before[-1] if before else None


def markdown(results: list[dict], size: int, iterations: int) -> str:
    lines = [
        f"#### {size} px, {iterations} iterations per run",
        "",
        "| pair | schedule | time | objective | avg style | avg content | max style | "
        "max content | vs fine (max judge) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        fine = next((r for r in res["runs"] if r["stroke"] == "fine"), res["runs"][0])
        for frac in FRACTIONS:
            t = frac * fine["end"]
            ref = at(fine, t)
            for r in res["runs"]:
                s = at(r, t)
                if s is None:
                    lines.append(
                        f"| {res['pair']} | {r['stroke']} | {t:.0f} s | no frame yet |||||"
                    )
                    continue
                verdict = ""
                if ref is not None and r is not fine:
                    ok = (
                        s["max_style"] <= ref["max_style"] * 1.0
                        and s["max_content"] <= ref["max_content"] * 1.0
                    )
                    verdict = (
                        "no worse"
                        if ok
                        else "worse on "
                        + "/".join(
                            k for k in ("style", "content") if s[f"max_{k}"] > ref[f"max_{k}"]
                        )
                    )
                lines.append(
                    f"| {res['pair']} | {r['stroke']} | {t:.0f} s | {s['objective']:.0f} | "
                    f"{s['avg_style']:.0f} | {s['avg_content']:.0f} | {s['max_style']:.0f} | "
                    f"{s['max_content']:.0f} | {verdict} |"
                )
    lines += ["", "ETA: worst error of the predicted end against the real end", ""]
    lines += [
        "| pair | schedule | run s | from 10% | from 25% | from 50% |",
        "|---|---|---|---|---|---|",
    ]
    for res in results:
        for r in res["runs"]:
            e = r["eta_error"]
            lines.append(
                f"| {res['pair']} | {r['stroke']} | {r['end']:.0f} | {e['from 10%']:.0%} | "
                f"{e['from 25%']:.0%} | {e['from 50%']:.0%} |"
            )
    return "\n".join(lines)


def plot(results: list[dict], path: Path, key: str = "max_style") -> None:
    """Loss-against-seconds curves, one panel per pair, drawn with Pillow (log loss)."""
    from PIL import ImageDraw

    colours = {"fine": "black", "medium": "blue", "large": "red", "auto": "green"}
    pw, ph, pad = 320, 220, 36
    sheet = Image.new("RGB", (pw * len(results), ph + 20), "white")
    draw = ImageDraw.Draw(sheet)
    for i, res in enumerate(results):
        pts = [(s["t"], s[key]) for r in res["runs"] for s in r["scores"]]
        tmax = max(t for t, _ in pts)
        lo, hi = np.log(min(v for _, v in pts)), np.log(max(v for _, v in pts))
        ox = i * pw
        draw.text((ox + pad, 2), f"{res['pair']}: {key} vs s", fill="black")
        draw.rectangle([ox + pad, 16, ox + pw - 8, ph - pad + 16], outline="gray")
        for r in res["runs"]:
            xy = [
                (
                    ox + pad + (pw - pad - 8) * t / tmax,
                    16 + (ph - pad) * (1 - (np.log(v) - lo) / max(hi - lo, 1e-9)),
                )
                for t, v in ((s["t"], s[key]) for s in r["scores"])
            ]
            draw.line(xy, fill=colours.get(r["stroke"], "gray"), width=2)
        draw.text((ox + pad, ph - pad + 20), f"0 .. {tmax:.0f} s", fill="black")
        legend = ", ".join(f"{k}={v}" for k, v in colours.items())
        draw.text((ox + pad, ph), legend, fill="black")
    sheet.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--pairs", nargs="+", default=DEFAULT_PAIRS)
    ap.add_argument("--strokes", nargs="+", default=["fine", "medium", "large", "auto"])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args()
    results = []
    for pair in args.pairs:
        c, s = (EXT[n] for n in pair.split(":"))
        runs = []
        for stroke in args.strokes:
            r = run(c, s, args.size, args.iterations, stroke)
            r["eta_error"] = eta_errors(r["etas"], r["end"])
            print(f"{pair} {stroke}: {r['end']:.0f} s, ETA error {r['eta_error']}", flush=True)
            runs.append(r)
        score(runs, c, s)
        results.append({"pair": pair, "runs": runs})
        if args.out:
            args.out.write_text(json.dumps({"size": args.size, "results": results}, indent=1))
    print(markdown(results, args.size, args.iterations))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
