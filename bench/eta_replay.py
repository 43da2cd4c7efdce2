"""Replays bench_schedule.py's recorded runs through the current ETA model.

    .venv/bin/python bench/eta_replay.py /tmp/schedule/schedule_2048.json [runs_1024.jsonl ...]

bench_schedule.py records, at every iteration, the wall and CPU seconds since the run
began, the ETA the engine gave, and the scale. Here each run's iterations are fed to
``eta.Eta`` as the engine feeds them, on the CPU-seconds axis (one thread, so the
machine's load does not bend it), with the engine's own cost of each scale (tiles
included) and its reassignment of the iterations a coarse scale leaves unused. So a
change to the ETA's model can be judged on recorded runs without rerunning them.
Prints the worst error of the predicted end (elapsed + ETA against the real end) from
10%, 25% and 50% of the run on; "logged" is what the engine said during the run, on the
wall clock.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_schedule import EXT, objective_options

from impasto.daemon.engine import Engine, eta

FROM = (0.1, 0.25, 0.5)


def worst(preds: list[tuple[float, float]], end: float) -> str:
    errs = [max(abs(t + p - end) / end for t, p in preds if t >= f * end) for f in FROM]
    return " / ".join(f"{e:.0%}" for e in errs)


def replay(records: list, costs: list[eta.ScaleCost]) -> list[tuple[float, float]]:
    """(CPU seconds, predicted seconds left) after each recorded iteration."""
    model = eta.Eta(list(costs))
    preds, prev, scale, done = [], 0.0, 0, 0
    for _wall, _eta, cpu, k, _it in records:
        k -= 1  # records are 1-based
        if k != scale:
            if k == scale + 1 and done < costs[scale].iterations:  # left early: a plateau
                model.reassign(scale, len(costs) - 1, costs[scale].iterations - done)
            scale, done = k, 0
            model.targets(k)
        model.iteration(k, cpu - prev)
        prev, done = cpu, done + 1
        preds.append((cpu, model.remaining()))
    return preds


def recorded_runs(path: Path):
    """(size, pair, iterations, run) from a schedule_SIZE.json or a runs_SIZE.jsonl."""
    size = int(path.stem.split("_")[1])
    if path.suffix == ".jsonl":  # written run by run, before any scoring
        for line in path.read_text().splitlines():
            run = json.loads(line)
            yield size, run["pair"], run["iterations"], run
        return
    data = json.loads(path.read_text())
    for res in data["results"]:
        for run in res["runs"]:
            yield size, res["pair"], data["iterations"], run


def main() -> None:
    engine = Engine()
    print(f"worst error from {', '.join(f'{f:.0%}' for f in FROM)} of the run on")
    for path in sys.argv[1:]:
        for size, pair, iterations, run in recorded_runs(Path(path)):
            if len(run.get("etas", [[]])[0]) < 5:
                print(f"{size} {pair} {run['stroke']}: no per-iteration records")
                continue
            content = Image.open(EXT[pair.split(":")[0]])
            opts = objective_options(size, iterations, run["stroke"])
            costs = engine.eta_costs(content.height, content.width, opts)
            replayed = worst(replay(run["etas"], costs), run["end"])
            logged = worst([(w, e) for w, e, *_ in run["etas"]], run["wall"])
            print(
                f"{size} {pair} {run['stroke']}: replayed (CPU) {replayed}; logged (wall) {logged}"
            )


if __name__ == "__main__":
    main()
