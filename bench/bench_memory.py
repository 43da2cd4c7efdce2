"""Peak memory of whole jobs against the engine's estimate and budget, one fresh process each.

    .venv/bin/python bench/bench_memory.py [--sizes 1024 2048 4096] [--iterations 2]
        [--budget-mb 3072] [--scales 1]

Each size runs in its own process (so its peak RSS is the job's, not a previous one's)
on tests/images tubingen/starry_night; the table shows the engine's memory plan (tile
core edge, tiles, L-BFGS history), its estimated peak, the measured peak RSS, and the
seconds per finest-scale iteration. A size the budget cannot hold shows the engine's
too_large_for_device message instead.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "tests" / "images"


def child(
    size: int, iterations: int, budget_mb: int, scales: int, precision: str, limit: float | None
) -> None:
    import numpy as np
    from PIL import Image

    from impasto.daemon.engine import Engine
    from impasto.shared.errors import ImpastoError
    from impasto.shared.options import JobOptions

    content = np.asarray(Image.open(IMAGES / "tubingen.jpg").convert("RGB"), np.float32) / 255
    style = np.asarray(Image.open(IMAGES / "starry_night.jpg").convert("RGB"), np.float32) / 255
    opts = JobOptions(
        size=size,
        iterations=iterations,
        scales=scales,
        frames=0,
        seed=0,
        precision=precision,
        time_limit=limit,
    )
    times: list[float] = []
    last = [time.perf_counter()]

    def on_progress(p) -> None:
        now = time.perf_counter()
        if p.scale == p.n_scales:
            times.append(now - last[0])
        last[0] = now

    engine = Engine(memory_budget=budget_mb * 1024**2)
    try:
        result = engine.run(content, [style], opts, on_progress=on_progress)
        out: dict[str, object] = {
            "memory": result.memory,
            "elapsed": result.elapsed,
            "precision": result.precision,
        }
        # the first finest-scale iteration also builds that scale's targets
        out["per_iteration"] = min(times[1:] or times or [float("nan")])
        out["stop"] = result.stop_reason
    except ImpastoError as exc:
        out = {"error": f"{exc.code}: {exc}"}
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--budget-mb", type=int, default=3072)
    ap.add_argument("--scales", type=int, default=1)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--time-limit", type=float, help="stop each job after this many seconds")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(
            args.sizes[0],
            args.iterations,
            args.budget_mb,
            args.scales,
            args.precision,
            args.time_limit,
        )
        return
    print(
        f"budget {args.budget_mb} MB, {args.iterations} iterations, scales={args.scales}, "
        f"precision {args.precision}\n"
    )
    print(
        "| size | tile (core px) | tiles | history | estimate GB | peak RSS GB | s/iteration "
        "| run s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--child", "--sizes", str(size)]
        cmd += ["--iterations", str(args.iterations), "--budget-mb", str(args.budget_mb)]
        cmd += ["--scales", str(args.scales), "--precision", args.precision]
        if args.time_limit:
            cmd += ["--time-limit", str(args.time_limit)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        try:
            r = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            print(f"| {size} | failed: {proc.stderr.strip()[-300:]} |")
            continue
        gb = 1024**3
        if "error" in r:
            print(f"| {size} | refused: {r['error']} | | | | {r['peak_rss'] / gb:.2f} | |")
            continue
        m = r["memory"]
        print(
            f"| {size} | {m['tile'] or 'whole'} | {m['tiles']} | {m['history']} | "
            f"{m['estimate'] / gb:.2f} | {r['peak_rss'] / gb:.2f} | {r['per_iteration']:.1f} | "
            f"{r['elapsed']:.0f} ({r['stop']}) |"
        )


if __name__ == "__main__":
    main()
