"""One engine measurement in a fresh process; bench_engine.py runs it and reads its JSON.

    python bench/engine_runner.py periter SIZE ITERS CONTENT STYLE [PRECISION]
    python bench/engine_runner.py ttq SIZE EVERY CONTENT STYLE OUT_PNG [PRECISION]
    python bench/engine_runner.py memory SIZE ITERS CONTENT STYLE [PRECISION]

PRECISION is the engine's ``precision`` option (default ``auto``).

A fresh process per measurement makes peak memory and first-run costs honest.
"""

from __future__ import annotations

import json
import resource
import sys
import time

T_START = time.perf_counter()

from impasto.daemon.engine import Engine  # noqa: E402  (after T_START: imports count)
from impasto.shared.imagefile import load_image  # noqa: E402
from impasto.shared.options import JobOptions  # noqa: E402


def per_iteration(size: int, iters: int, content, style, precision: str) -> dict:
    """Fixed resolution, like pastiche: seconds per iteration after the first."""
    stamps: list[float] = []
    result = Engine().run(
        content,
        [style],
        JobOptions(size=size, iterations=iters, scales=1, frames=0, precision=precision),
        on_progress=lambda p: stamps.append(time.perf_counter()),
    )
    per = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return {
        "seconds_per_iteration": per,
        "width": result.image.shape[1],
        "height": result.image.shape[0],
        "precision": result.precision,
    }


def time_to_quality(
    size: int, every: int, content_path, style_path, out: str, precision: str
) -> dict:
    """The default run, saving a frame every ``every`` final-scale iterations.

    The clock starts at process start (imports, model loading and targets count) and
    excludes only the PNG saving; the bench scores the frames after the run.
    """
    from PIL import Image

    content = load_image(content_path).to_numpy()
    style = load_image(style_path).to_numpy()
    from engine_evaluator import pastiche_objective, to_8bit

    # The evaluator's objective, which is pastiche's default (no total variation), not
    # the product's default look; everything else (schedule, iterations) is the default.
    opts = pastiche_objective(JobOptions(size=size, precision=precision))
    total = opts.total_iterations()
    saving = 0.0
    frames: list[dict] = []

    def save(image, path) -> None:
        Image.fromarray(to_8bit(image)).save(path)

    def on_progress(p) -> None:
        nonlocal saving
        if p.scale != p.n_scales or p.image is None:
            return
        if p.iteration % every and p.iteration != p.total:
            return
        t = time.perf_counter()
        path = out.replace(".png", f"_{p.iteration:04d}.png")
        save(p.image, path)
        frames.append({"iteration": p.iteration, "seconds": t - T_START - saving, "png": path})
        saving += time.perf_counter() - t

    result = Engine().run(content, [style], opts.replace(frames=total), on_progress=on_progress)
    run_seconds = time.perf_counter() - T_START - saving
    save(result.image, out)
    return {
        "run_seconds": run_seconds,
        "iterations": result.iterations,
        "frames": frames,
        "precision": result.precision,
        "plan": [[s.height, s.width, s.iterations] for s in _plan(result, opts)],
    }


def _plan(result, opts: JobOptions) -> list:
    """The scales the run went through (the engine plans them from the same options)."""
    from impasto.daemon.engine import schedule

    h, w = result.image.shape[:2]
    return schedule.plan(h, w, opts.total_iterations(), opts.scales)


def memory(size: int, iters: int, content, style, precision: str) -> dict:
    opts = JobOptions(size=size, iterations=iters, frames=0, precision=precision)
    Engine().run(content, [style], opts)
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str]) -> None:
    mode = argv[1]
    if mode == "ttq":
        precision = argv[7] if len(argv) > 7 else "auto"
        out = time_to_quality(int(argv[2]), int(argv[3]), argv[4], argv[5], argv[6], precision)
    else:
        size, iters = int(argv[2]), int(argv[3])
        content = load_image(argv[4]).to_numpy()
        style = load_image(argv[5]).to_numpy()
        precision = argv[6] if len(argv) > 6 else "auto"
        fn = per_iteration if mode == "periter" else memory
        out = fn(size, iters, content, style, precision)
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
