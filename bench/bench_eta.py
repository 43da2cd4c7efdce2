"""The ETA's error over one default job, on the wall clock.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_eta.py --size 2048 --budget-mb 3072

Runs one default job (tests/images tubingen/starry_night, ``--iterations`` over the
default schedule) in this process and records, at every iteration, the seconds since the
job began and the ETA the engine reported. Prints the worst error of the predicted end
(elapsed + ETA) against the real end from 10%, 25% and 50% of the run on (issue 13's
target: within 25% from 10% on), and the prediction at a dozen points of the run. Wall
seconds: run it on a quiet machine. ``eta_replay.py`` replays bench_schedule.py's
recorded runs on the CPU-seconds axis instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import plan_text
from bench_schedule import EXT, eta_errors, rgb

from impasto.daemon.engine import Engine
from impasto.shared.options import JobOptions


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--budget-mb", type=int, default=0, help="0: the machine's default")
    args = ap.parse_args()
    log: list[tuple[float, float | None, int]] = []
    t0 = time.perf_counter()

    def on_progress(p) -> None:
        log.append((time.perf_counter() - t0, p.eta, p.scale))

    engine = Engine(memory_budget=args.budget_mb * 1024**2 or None)
    opts = JobOptions(size=args.size, iterations=args.iterations, seed=0)
    content, style = rgb(EXT["tubingen"]), rgb(EXT["starry_night"])
    result = engine.run(content, [style], opts, on_progress)
    end = time.perf_counter() - t0
    m = result.memory
    tiles = f" ({m['tiles']} tiles)" if m["tile"] else ""
    print(
        f"{args.size} px, budget {m['budget'] / 1024**3:.2f} GB, finest scale "
        f"{plan_text(m)}{tiles}; {result.iterations} iterations in {end:.0f} s\n"
    )
    print("| worst error of the predicted end | |")
    print("|---|---|")
    for since, error in eta_errors(log, end).items():
        print(f"| {since} | {error:.0%} |")
    print("\n| s | scale | ETA s | predicted end s |")
    print("|---|---|---|---|")
    for t, e, k in log[:: max(1, len(log) // 12)]:
        if e is not None:
            print(f"| {t:.0f} | {k} | {e:.0f} | {t + e:.0f} |")


if __name__ == "__main__":
    main()
