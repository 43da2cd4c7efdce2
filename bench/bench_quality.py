"""Time to pastiche's 300-step quality, style and content apart, on several pairs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_quality.py --size 512 \\
        [--pairs astronaut:picasso_selfport1907 chelsea:seated-nude] [--out-dir DIR]

Issue 13's first target: at 512 px, reach the quality of pastiche's 300 L-BFGS steps on
style *and* content (independent judge) in a fraction of its time. For each pair,
pastiche 1.6.0 runs 300 steps with its default objective (content 0.01, style 10, no TV)
and network (VGG19 with max pooling, its ``--pooling`` default), saving a picture every
50 steps; then Impasto runs, saving frames, once on the same objective and once on its
own default weights (content 0.05, TV 2: what the CLI and the dialogs use), with its
other defaults (stroke scale auto, automatic precision); ``--objectives`` picks, and
``--poolings avg mix`` runs each with Impasto's network pooled both ways. Both are
scored by two judges, the original VGG19 with average pooling (Impasto's network by
default) and with max pooling (pastiche's), style and content apart.
The table gives, per judge, the first Impasto frame at or below pastiche's final
picture on style and on content, and its CPU time as a share of pastiche's.

Both tools run one after the other with one thread each, timed in CPU seconds, so the
ratio holds on a shared machine. pastiche's log gives wall seconds per step; they are
scaled by its process's CPU/wall ratio (close to 1 for one thread on a free core).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import parse_pastiche, pastiche
from bench_schedule import EXT, rgb
from engine_evaluator import Evaluator, pastiche_objective, to_8bit

from impasto.daemon.engine import Engine
from impasto.shared.options import CHOICES, JobOptions

JUDGES = ("avg", "max")


def run_pastiche(content: Path, style: Path, size: int, steps: int, out: Path) -> dict:
    """pastiche's run: its pictures every 50 steps with their CPU seconds."""
    log, ws = out / "pastiche.log", out / "pastiche_ws"
    proc = pastiche(size, steps, out / "pastiche.png", 10, log, ws, content, style)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"pastiche failed:\n{log.read_text()}")
    rows = parse_pastiche(log.read_text())
    wall = {step: seconds for step, seconds, _ in rows}
    cpu_per_wall = (usage.ru_utime + usage.ru_stime) / rows[-1][1]
    shots = [(int(f.stem), f) for f in sorted(ws.glob("*.png")) if int(f.stem) in wall]
    shots = [s for s in shots if s[0] < steps] + [(steps, out / "pastiche.png")]
    return {
        "cpu_per_wall": cpu_per_wall,
        "frames": [
            (wall[n] * cpu_per_wall, n, np.asarray(Image.open(f).convert("RGB"))) for n, f in shots
        ],
    }


OBJECTIVES = ("pastiche", "default")


def run_impasto(
    content: Path, style: Path, size: int, iterations: int, objective: str, **overrides
) -> dict:
    """Impasto's defaults on ``objective`` (pastiche's weights or its own), with any other
    ``JobOptions`` fields in ``overrides``: frames with CPU seconds and iterations."""
    frames: list[tuple[float, int, np.ndarray]] = []

    def on_progress(p) -> None:
        if p.image is not None:
            cpu = time.process_time() - cpu0
            frames.append((cpu, p.iteration, to_8bit(p.image)))

    opts = JobOptions(size=size, iterations=iterations, frames=iterations // 4, seed=0)
    opts = replace(opts, **overrides)
    if objective == "pastiche":
        opts = pastiche_objective(opts)
    cpu0 = time.process_time()
    result = Engine().run(rgb(content), [rgb(style)], opts, on_progress=on_progress)
    return {"precision": result.precision, "frames": frames}


def scored(frames, judges: dict[str, Evaluator]) -> list[dict]:
    rows = []
    for cpu, step, img in frames:
        row: dict = {"cpu": cpu, "step": step}
        for name, judge in judges.items():
            loss = judge.loss(img)
            row[f"{name}_style"], row[f"{name}_content"] = loss["style"], loss["content"]
        rows.append(row)
    return rows


def reached(rows: list[dict], bar: dict, judge: str) -> dict | None:
    """First row at or below ``bar`` on style and content of ``judge``."""
    keys = (f"{judge}_style", f"{judge}_content")
    return next((r for r in rows if all(r[k] <= bar[k] for k in keys)), None)


def markdown(results: list[dict], size: int) -> str:
    lines = [
        "| pair | Impasto's weights | judge | pastiche final: style / content | CPU s "
        "| Impasto reaches both at | CPU s | share of pastiche's "
        "| Impasto final: style / content |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        bar, p_end = res["pastiche"][-1], res["pastiche"][-1]["cpu"]
        for objective, rows in res["impasto"].items():
            last = rows[-1]
            for judge in JUDGES:
                r = reached(rows, bar, judge)
                at = f"iteration {r['step']}" if r else "not reached"
                cpu = f"{r['cpu']:.0f}" if r else ""
                share = f"**{r['cpu'] / p_end:.2f}x**" if r else ""
                style, content = f"{judge}_style", f"{judge}_content"
                lines.append(
                    f"| {res['pair']} | {objective} | {judge} "
                    f"| {bar[style]:.0f} / {bar[content]:.0f} | {p_end:.0f} | {at} | {cpu} "
                    f"| {share} | {last[style]:.0f} / {last[content]:.0f} |"
                )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=300, help="pastiche's steps")
    ap.add_argument("--iterations", type=int, default=200, help="Impasto's iterations")
    ap.add_argument(
        "--pairs", nargs="+", default=["astronaut:picasso_selfport1907", "chelsea:seated-nude"]
    )
    ap.add_argument(
        "--objectives",
        nargs="+",
        choices=OBJECTIVES,
        default=list(OBJECTIVES),
        help="Impasto's weights: pastiche's objective, its own defaults, or both",
    )
    ap.add_argument(
        "--poolings",
        nargs="+",
        choices=CHOICES["pooling"],
        default=["avg"],
        help="the pooling of Impasto's network, one run each (the judges keep theirs)",
    )
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/quality"))
    ap.add_argument("--report", action="store_true", help="only print the table from --out-dir")
    ap.add_argument(
        "--pastiche-from",
        type=Path,
        help="take pastiche's scored run of each pair from this earlier quality_SIZE.json "
        "(same size and steps) instead of running it again: it does not change with "
        "Impasto's code, and takes 15-25 CPU minutes per pair",
    )
    args = ap.parse_args()
    path = args.out_dir / f"quality_{args.size}.json"
    earlier = (
        {r["pair"]: r for r in json.loads(args.pastiche_from.read_text())}
        if (args.pastiche_from)
        else {}
    )
    if not args.report:
        results = []
        for pair in args.pairs:
            c, s = (EXT[n] for n in pair.split(":"))
            out = args.out_dir / pair.replace(":", "_")
            out.mkdir(parents=True, exist_ok=True)
            p = None if pair in earlier else run_pastiche(c, s, args.size, args.steps, out)
            runs = {
                o if pool == "avg" else f"{o}, {pool} pooling": run_impasto(
                    c, s, args.size, args.iterations, o, pooling=pool
                )
                for pool in args.poolings
                for o in args.objectives
            }
            first = next(iter(runs.values()))
            h, w = first["frames"][-1][2].shape[:2]
            judges = {pool: Evaluator(c, s, w, h, pooling=pool) for pool in JUDGES}
            for o, i in runs.items():
                Image.fromarray(i["frames"][-1][2]).save(out / f"impasto_{o}.png")
            if p is None:
                kept = earlier[pair]
                per_wall, pastiche_rows = kept["pastiche_cpu_per_wall"], kept["pastiche"]
            else:
                per_wall, pastiche_rows = p["cpu_per_wall"], scored(p["frames"], judges)
            results.append(
                {
                    "pair": pair,
                    "iterations": args.iterations,
                    "precision": first["precision"],
                    "pastiche_cpu_per_wall": per_wall,
                    "pastiche": pastiche_rows,
                    "impasto": {o: scored(i["frames"], judges) for o, i in runs.items()},
                }
            )
            ends = ", ".join(f"Impasto ({o}) {i['frames'][-1][0]:.0f}" for o, i in runs.items())
            pastiche_end = pastiche_rows[-1]["cpu"]
            print(f"{pair}: pastiche {pastiche_end:.0f} CPU s, {ends} CPU s", flush=True)
            path.write_text(json.dumps(results, indent=1))
    print(markdown(json.loads(path.read_text()), args.size))


if __name__ == "__main__":
    main()
