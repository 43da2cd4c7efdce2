"""Peak memory of whole jobs against the engine's estimate and budget, one fresh process each.

    .venv/bin/python bench/bench_memory.py [--sizes 1024 2048 4096] [--iterations 2]
        [--budget-mb 3072] [--scales 1] [--frames 0] [--content tubingen.jpg]

Each size runs in its own process (so its peak RSS is the job's, not a previous one's)
on tests/images tubingen/starry_night (``--content``, ``--style``: others there); the
table shows the engine's memory plan (tile core edge, tiles, L-BFGS history), its
estimated peak, the measured peak RSS, the seconds per finest-scale iteration, how many
the finest scale ran and how far its loss fell over the last 8 (the finish rule stops it
under 1%, and the run shows "finished": schedule.py). A tiled scale's pass 1 (the Gram
sums) runs in larger tiles of its own; their count is in brackets. A size the budget
cannot hold shows the engine's too_large_for_device message instead. ``--budget-mb 0``
plans on the engine's default budget for this machine (memory.default_budget).

``--scales 0`` runs the default schedule and ``--frames N`` saves N progress frames as
PNGs the way ``impasto stylize --frames`` does, so a whole CLI job is measured.
``--layer`` hands the content over as an editor's layer reaches the daemon's worker: at
the output size, with an alpha channel, kept as the 8-bit upload beside its float copy. A
second table says in which part of an iteration each size's peak came: RSS is sampled
every 10 ms and put down to the tiled or whole-picture pass, the L-BFGS step, the
progress frame, or the rest.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "tests" / "images"


def current_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Phases:
    """The highest RSS seen in each phase of a job: a sampling thread reads VmRSS every
    10 ms and files it under the innermost phase running at that moment. The first call
    of each wrapped phase is also watched on its own: how far RSS rose during it over
    RSS as it began, per pixel of the largest window the network saw in it (the figures
    memory.py's pass constants come from)."""

    def __init__(self):
        self.stack, self.peaks = ["setup"], {}
        self.first: dict[str, dict[str, int]] = {}
        self._watching: dict[str, list[int]] = {}  # phase -> [RSS at entry, peak]
        self.running = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while self.running:
            rss, where = current_rss(), self.stack[-1]
            self.peaks[where] = max(rss, self.peaks.get(where, 0))
            for watch in list(self._watching.values()):
                watch[1] = max(watch[1], rss)
            time.sleep(0.01)

    def wrap(self, owner, name: str, phase: str, pixels=None) -> None:
        """Wrap ``owner.name``; ``pixels(*args)`` gives the largest window it sees."""
        fn = getattr(owner, name)

        def wrapped(*args, **kwargs):
            watch = pixels is not None and phase not in self.first
            if watch:
                start = current_rss()
                self._watching[phase] = [start, start]
            self.stack.append(phase)
            try:
                return fn(*args, **kwargs)
            finally:
                self.stack.pop()
                if watch and pixels is not None:
                    start, peak = self._watching.pop(phase)
                    self.first[phase] = {
                        "rise": max(peak, current_rss()) - start,
                        "px": pixels(*args),
                    }

        setattr(owner, name, wrapped)

    def stop(self) -> dict[str, int]:
        time.sleep(0.05)
        self.running = False
        return dict(self.peaks)


def child(
    size: int,
    iterations: int,
    budget_mb: int,
    scales: int,
    precision: str,
    limit: float | None,
    frames: int,
    layer: bool,
    tile_size: int | None = None,
    pair: tuple[str, str] = ("tubingen.jpg", "starry_night.jpg"),
) -> None:
    import numpy as np
    from PIL import Image

    from impasto.daemon.engine import Engine, lbfgs, objective, split, tiling
    from impasto.shared.errors import ImpastoError
    from impasto.shared.options import JobOptions
    from impasto.shared.rawimage import RawImage

    def largest(tiles) -> int:
        return max(tiling.window_areas(tiles))

    phases = Phases()
    phases.wrap(
        tiling.TiledObjective, "value_and_grad", "tiled pass", lambda o, x: largest(o.tiles)
    )
    phases.wrap(tiling, "tiled_grams", "Gram pass", lambda m, x, layers, t, fmt: largest(t))
    phases.wrap(  # per pixel of the picture: its deep part runs whole
        split.SplitObjective, "value_and_grad", "split pass", lambda o, x: x.shape[-2] * x.shape[-1]
    )
    phases.wrap(  # per pixel of the picture, whose cut's output it is
        split.SplitObjective,
        "_deep_slope",
        "split: deep part",
        lambda o, p: p.shape[-2] * p.shape[-1] * o.cut_stride**2,
    )
    phases.wrap(
        objective.Objective, "value_and_grad", "whole pass", lambda o, x: x.shape[-2] * x.shape[-1]
    )
    phases.wrap(lbfgs.LBFGS, "step", "L-BFGS step")
    frames_dir = Path(tempfile.mkdtemp(prefix="bench_memory_"))

    picture = Image.open(IMAGES / pair[0]).convert("RGB")
    upload = None
    if layer:  # the layer at the output size, RGBA, as the worker gets it
        scale = size / max(picture.size)
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)))
        upload = RawImage.from_numpy(np.asarray(picture.convert("RGBA")), 8)
        content = upload.to_numpy()
    else:
        content = np.asarray(picture, np.float32) / 255
    style = np.asarray(Image.open(IMAGES / pair[1]).convert("RGB"), np.float32) / 255
    opts = JobOptions(
        size=size,
        iterations=iterations,
        scales=scales or None,
        frames=frames,
        seed=0,
        precision=precision,
        time_limit=limit,
        tile_size=tile_size,
    )
    times: list[float] = []
    totals: list[float] = []  # the finest scale's total loss per iteration
    last = [time.perf_counter()]

    def on_progress(p) -> None:
        if p.image is not None:  # what the CLI does with a frame
            phases.stack.append("frame")
            RawImage.from_numpy(p.image).to_pil().save(frames_dir / f"{p.iteration}.png")
            phases.stack.pop()
        now = time.perf_counter()
        if p.scale == p.n_scales:
            times.append(now - last[0])
            totals.append(p.losses["total"])
        last[0] = now

    engine = Engine(memory_budget=budget_mb * 1024**2 or None)
    phases.stack.append("the rest")
    try:
        result = engine.run(content, [style], opts, on_progress=on_progress)
        out: dict[str, object] = {
            "memory": result.memory,
            "elapsed": result.elapsed,
            "precision": result.precision,
        }
        # the first finest-scale iteration also builds that scale's targets
        out["per_iteration"] = min(times[1:] or times or [float("nan")])
        # "done" with iterations to spare: the finish rule ended it (schedule.finished)
        early = result.stop_reason == "done" and result.iterations < iterations
        out["stop"] = "finished" if early else result.stop_reason
        out["finest"] = len(times)
        # how far the finest scale's loss fell over its last 8 iterations (schedule.py's
        # finish rule: under 1%)
        out["last_drop"] = 1 - totals[-1] / totals[-9] if len(totals) > 8 else float("nan")
    except ImpastoError as exc:
        out = {"error": f"{exc.code}: {exc}"}
    del upload  # held to the end, as the worker holds its task's upload
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["phases"] = phases.stop()
    out["first"] = phases.first
    print(json.dumps(out))


def plan_text(m: dict) -> str:
    """The finest scale's plan: whole, tiles, or tiles up to a pooling layer (split)."""
    if not m["tile"]:
        return "whole, pages kept" if m.get("keep_pages") else "whole"
    return f"{m['tile']}, after pool{m['split']} whole" if m.get("split") else str(m["tile"])


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--budget-mb", type=int, default=3072, help="0: the machine's default")
    ap.add_argument("--scales", type=int, default=1, help="0: the default schedule")
    ap.add_argument("--frames", type=int, default=0, help="progress frames saved as PNGs")
    ap.add_argument("--layer", action="store_true", help="content as an editor's RGBA layer")
    ap.add_argument("--tile-size", type=int, help="tile the finest scale at this core size")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--time-limit", type=float, help="stop each job after this many seconds")
    ap.add_argument("--content", default="tubingen.jpg", help="a picture in tests/images")
    ap.add_argument("--style", default="starry_night.jpg", help="a picture in tests/images")
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
            args.frames,
            args.layer,
            args.tile_size,
            (args.content, args.style),
        )
        return
    print(
        f"{args.content} in the style of {args.style}; "
        + (f"budget {args.budget_mb} MB" if args.budget_mb else "the machine's default budget")
        + f", {args.iterations} iterations, scales={args.scales}, "
        f"precision {args.precision}, frames {args.frames}"
        + (", content as an RGBA layer at the output size\n" if args.layer else "\n")
    )
    print(
        "| size | budget GB | tile (core px) | tiles (pass 1's) | history | estimate GB "
        "| peak RSS GB "
        "| s/iteration "
        "| run s | finest iterations | its last 8: loss drop |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    by_phase, firsts = {}, {}
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--child", "--sizes", str(size)]
        cmd += ["--iterations", str(args.iterations), "--budget-mb", str(args.budget_mb)]
        cmd += ["--scales", str(args.scales), "--precision", args.precision]
        cmd += ["--frames", str(args.frames)] + (["--layer"] if args.layer else [])
        cmd += ["--tile-size", str(args.tile_size)] if args.tile_size else []
        cmd += ["--content", args.content, "--style", args.style]
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
            print(f"| {size} | | refused: {r['error']} | | | | {r['peak_rss'] / gb:.2f} | |")
            continue
        m = r["memory"]
        by_phase[size] = r["phases"]
        firsts[size] = r["first"]
        print(
            f"| {size} | {m['budget'] / gb:.2f} | {plan_text(m)} | "
            f"{m['tiles']} ({m['gram_tiles']}) | "
            f"{m['history']} | "
            f"{m['estimate'] / gb:.2f} | {r['peak_rss'] / gb:.2f} | {r['per_iteration']:.1f} | "
            f"{r['elapsed']:.0f} ({r['stop']}) | {r['finest']} | {r['last_drop']:.1%} |"
        )
    names = list(dict.fromkeys(k for p in by_phase.values() for k in p))
    if by_phase:
        print("\nPeak RSS GB by phase\n")
        print("| size | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
    for size, peaks in by_phase.items():
        cells = [f"{peaks[k] / 1024**3:.2f}" if k in peaks else "" for k in names]
        print(f"| {size} | " + " | ".join(cells) + " |")
    if any(firsts.values()):
        print("\nFirst pass of each kind: RSS rise during it, per pixel of its largest window\n")
        print("| size | pass | rise MB | largest window px | bytes per px |")
        print("|---|---|---|---|---|")
    for size, first in firsts.items():
        for kind, f in first.items():
            print(
                f"| {size} | {kind} | {f['rise'] / 1024**2:.0f} | {f['px']} | "
                f"{f['rise'] / f['px']:.0f} |"
            )


if __name__ == "__main__":
    main()
