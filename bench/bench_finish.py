"""When is a large picture finished? The finest scale's own losses against the judges'.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_finish.py --size 2048 \\
        --pair tubingen:starry_night --objective pastiche --finest 32 --out-dir /tmp/finish
    .venv/bin/python bench/bench_finish.py --report /tmp/finish/*.json

One default job (stroke scale "auto", the "standard" budget) runs with the engine's
finish rule switched off until its finest scale has done ``--finest`` iterations. The
engine's losses and the CPU seconds are kept at every iteration, and a frame at every
one of the finest scale's iterations; the frames are then scored by the bench's judges
(VGG19 with average and with max pooling, style and content apart, and the layout
judge). The report replays finish rules (a window of iterations and a relative drop of
the engine's total loss over it) on the recorded losses and gives, for each, where it
stops, the CPU time saved against the last recorded iteration, and how far each judge
there still is from the last frame. ``schedule.FINISH_WINDOW`` / ``FINISH_DROP`` were
chosen from these tables.

``--objective pastiche`` is the issue's bench setting (content 0.01, style 10, no TV);
``default`` is what the CLI and the editors run (content 0.05, TV 2).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_schedule import EXT, rgb
from engine_evaluator import Evaluator, LayoutJudge, pastiche_objective, to_8bit

from impasto.daemon.engine import CancelToken, Engine, schedule
from impasto.shared.options import JobOptions

RULES = [(w, d) for w in (3, 4, 6, 8) for d in (0.01, 0.02, 0.03, 0.05)]


def options(size: int, objective: str, iterations: int | None) -> JobOptions:
    opts = JobOptions(size=size, iterations=iterations, frames=0, seed=0)
    return pastiche_objective(opts) if objective == "pastiche" else opts


def run(content: Path, style: Path, opts: JobOptions, finest: int) -> dict:
    """The job until its finest scale's ``finest``-th iteration, finish rule off."""
    steps: list[dict] = []
    frames: list[tuple[int, np.ndarray]] = []
    token = CancelToken()

    def on_progress(p) -> None:
        at_finest = p.scale == p.n_scales and max(p.width, p.height) == opts.size
        steps.append(
            {"cpu": time.process_time() - cpu0, "scale": p.scale, "finest": at_finest}
            | {k: float(v) for k, v in p.losses.items()}
        )
        if at_finest:
            n = sum(s["finest"] for s in steps)
            if p.image is not None:
                frames.append((n, to_8bit(p.image)))
            if n >= finest:
                token.cancel()

    opts.frames = opts.total_iterations()  # a frame every iteration; only the finest kept
    drop = schedule.FINISH_DROP
    schedule.FINISH_DROP = -math.inf  # the rule off: every iteration is recorded
    try:
        cpu0 = time.process_time()
        Engine().run(rgb(content), [rgb(style)], opts, on_progress=on_progress, cancel=token)
    finally:
        schedule.FINISH_DROP = drop
    return {"steps": steps, "frames": frames}


def score(
    frames: list[tuple[int, np.ndarray]], content: Path, style: Path, every: int
) -> list[dict]:
    """Judges' scores of every ``every``-th finest-scale frame, the first and the last."""
    h, w = frames[-1][1].shape[:2]
    judges = {pool: Evaluator(content, style, w, h, pooling=pool) for pool in ("avg", "max")}
    layout = LayoutJudge(content, w, h)
    picks = [f for f in frames if f[0] % every == 0 or f[0] in (1, frames[-1][0])]
    rows = []
    for n, img in picks:
        row: dict = {"finest_iteration": n, "layout": layout.distance(img)}
        for pool, judge in judges.items():
            loss = judge.loss(img)
            row[f"{pool}_style"], row[f"{pool}_content"] = loss["style"], loss["content"]
        rows.append(row)
        print(f"  scored finest iteration {n}: {row}", flush=True)
    return rows


def stop_at(totals: list[float], window: int, drop: float) -> int:
    """The finest-scale iteration (1-based) where a rule would stop, or len(totals)."""
    for n in range(1, len(totals) + 1):
        if schedule.flattened(totals[:n], window, drop):
            return n
    return len(totals)


def report(results: list[dict]) -> str:
    lines = [
        "| pair | objective | rule: window / drop | stops at finest iteration | CPU s "
        "| saved | max style / content vs last | avg style / content vs last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        finest = [s for s in res["steps"] if s["finest"]]
        totals = [s["total"] for s in finest]
        scores = {r["finest_iteration"]: r for r in res["scores"]}
        last = scores[max(scores)]
        for window, drop in RULES:
            n = stop_at(totals, window, drop)
            scored = max(k for k in scores if k <= n)  # the scored frame at or before it
            s = scores[scored]
            rel = [
                f"{s[f'{j}_{t}'] / last[f'{j}_{t}'] - 1:+.1%}"
                for j in ("max", "avg")
                for t in ("style", "content")
            ]
            cpu, end = finest[n - 1]["cpu"], finest[-1]["cpu"]
            lines.append(
                f"| {res['pair']} | {res['objective']} | {window} / {drop:.0%} | {n} "
                f"(scored: {scored}) | {cpu:.0f} | {1 - cpu / end:.0%} | {rel[0]} / {rel[1]} "
                f"| {rel[2]} / {rel[3]} |"
            )
    return "\n".join(lines)


def curve(res: dict) -> str:
    """The finest scale, iteration by iteration: engine losses and the judges."""
    finest = [s for s in res["steps"] if s["finest"]]
    scores = {r["finest_iteration"]: r for r in res["scores"]}
    lines = [
        f"{res['pair']} ({res['objective']}), finest scale {res['size']} px",
        "| it | CPU s | engine total | drop over 4 | max style | max content | avg style "
        "| avg content | layout |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, s in enumerate(finest, 1):
        d = "" if n <= 4 else f"{1 - s['total'] / finest[n - 5]['total']:.1%}"
        r = scores.get(n)
        judged = (
            f"{r['max_style']:.0f} | {r['max_content']:.0f} | {r['avg_style']:.0f} "
            f"| {r['avg_content']:.0f} | {r['layout']:.4f}"
            if r
            else "| | | |"
        )
        lines.append(f"| {n} | {s['cpu']:.0f} | {s['total']:.1f} | {d} | {judged} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--pair", default="tubingen:starry_night")
    ap.add_argument("--objective", choices=("pastiche", "default"), default="pastiche")
    ap.add_argument("--iterations", type=int, default=None, help="the job's budget (preset)")
    ap.add_argument("--finest", type=int, default=32, help="finest-scale iterations to record")
    ap.add_argument("--score-every", type=int, default=2, help="score every N-th frame")
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/finish"))
    ap.add_argument("--report", nargs="+", type=Path, help="tables from saved runs")
    args = ap.parse_args()
    if args.report:
        results = [json.loads(p.read_text()) for p in args.report]
        for res in results:
            print(curve(res), "\n")
        print(report(results))
        return
    content, style = (EXT[name] for name in args.pair.split(":"))
    opts = options(args.size, args.objective, args.iterations)
    t = time.perf_counter()
    res = run(content, style, opts, args.finest)
    print(f"run: {time.perf_counter() - t:.0f} s wall, {res['steps'][-1]['cpu']:.0f} CPU s")
    out = {
        "pair": args.pair,
        "objective": args.objective,
        "size": args.size,
        "steps": res["steps"],
        "scores": score(res["frames"], content, style, args.score_every),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    last = args.out_dir / f"finish_{args.size}_{content.stem}_{args.objective}.jpg"
    Image.fromarray(res["frames"][-1][1]).save(last, quality=92)
    path = args.out_dir / f"finish_{args.size}_{content.stem}_{args.objective}.json"
    path.write_text(json.dumps(out))
    print(curve(out), "\n")
    print(report([out]))


if __name__ == "__main__":
    main()
