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
import time
from pathlib import Path

import numpy as np
from PIL import Image

from impasto.daemon.engine import Engine
from impasto.shared.options import JobOptions

IMAGES = Path(__file__).resolve().parent.parent / "tests" / "images"
FROM = (0.1, 0.25, 0.5)


def picture(name: str) -> np.ndarray:
    return np.asarray(Image.open(IMAGES / name).convert("RGB"), np.float32) / 255


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
    result = engine.run(picture("tubingen.jpg"), [picture("starry_night.jpg")], opts, on_progress)
    end = time.perf_counter() - t0
    m = result.memory
    plan = "whole" if not m["tile"] else f"{m['tiles']} tiles of {m['tile']} px"
    if m["split"]:
        plan += f" after pool{m['split']}"
    if m["keep_pages"]:
        plan += ", pages kept"
    print(
        f"{args.size} px, budget {m['budget'] / 1024**3:.2f} GB, finest scale {plan}; "
        f"{result.iterations} iterations in {end:.0f} s\n"
    )
    print("| from | worst error of the predicted end |")
    print("|---|---|")
    for frac in FROM:
        errors = [abs(t + e - end) / end for t, e, _ in log if t >= frac * end and e is not None]
        print(f"| {frac:.0%} | {max(errors, default=float('nan')):.0%} |")
    print("\n| s | scale | ETA s | predicted end s |")
    print("|---|---|---|---|")
    for t, e, k in log[:: max(1, len(log) // 12)]:
        if e is not None:
            print(f"| {t:.0f} | {k} | {e:.0f} | {t + e:.0f} |")


if __name__ == "__main__":
    main()
