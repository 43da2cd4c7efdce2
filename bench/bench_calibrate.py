"""How close a fresh engine's estimate comes to the real time, guessed and calibrated.

    .venv/bin/python bench/bench_calibrate.py [--sizes 256 512 1024] [--iterations 30 20 8]

A daemon measures its speed as it starts (``Engine.calibrate``: a small job) so that an
editor's first estimate, before any real job, is this machine's. Here a fresh engine
estimates one job per size at the default speed (``eta.DEFAULT_SECONDS_PER_UNIT``), is
calibrated, estimates them again, and then runs them (tubingen / starry_night, one
scale, the default objective), each job's estimate made before any of them ran. Prints
each estimate over the job's real time (setup with the cached network included).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_schedule import EXT, rgb

from impasto.daemon.engine import Engine
from impasto.shared.options import JobOptions


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--iterations", type=int, nargs="+", default=[30, 20, 8])
    ap.add_argument("--pair", default="tubingen:starry_night")
    args = ap.parse_args()
    content, style = (rgb(EXT[n]) for n in args.pair.split(":"))
    h, w = content.shape[:2]
    jobs = [
        JobOptions(size=size, iterations=n, scales=1, frames=0)
        for size, n in zip(args.sizes, args.iterations, strict=True)
    ]
    engine = Engine()
    guessed = [engine.preflight(h, w, o)["seconds"] for o in jobs]
    t = time.perf_counter()
    engine.calibrate()
    calibration = time.perf_counter() - t
    measured = [engine.preflight(h, w, o)["seconds"] for o in jobs]
    print(f"calibration: {calibration:.1f} s (network load included)\n")
    print("| size | iterations | real s | default speed: estimate / real | calibrated |")
    print("|---|---|---|---|---|")
    for o, guess, estimate in zip(jobs, guessed, measured, strict=True):
        t = time.perf_counter()
        engine.run(content, [style], o)
        real = time.perf_counter() - t
        print(
            f"| {o.size} | {o.iterations} | {real:.1f} | {guess:.1f} s: {guess / real:.2f}x "
            f"| {estimate:.1f} s: **{estimate / real:.2f}x** |",
            flush=True,
        )


if __name__ == "__main__":
    main()
