"""Replays bench_schedule.py's recorded runs through the current ETA model.

    .venv/bin/python bench/eta_replay.py /tmp/schedule_256.json

Each run's logged iteration times are fed to ``eta.Eta`` as the engine feeds them, so a
change to the ETA's constants can be judged on recorded runs without rerunning them
("logged" is what the engine said during the run). Prints the worst error of the
predicted end (elapsed + ETA against the real end) from 10%, 25% and 50% of the run on.
"""

from __future__ import annotations

import json
import sys

from impasto.daemon.engine import eta, schedule

FROM = (0.1, 0.25, 0.5)


def worst(preds: list[tuple[float, float]], end: float) -> str:
    errs = [max(abs(t + p - end) / end for t, p in preds if t >= f * end) for f in FROM]
    return " ".join(f"{e:.0%}" for e in errs)


def replay(run: dict, size: int) -> list[tuple[float, float]]:
    stamps = [t for t, _ in run["etas"]]
    n = schedule.n_scales(run["stroke"], size, None)
    plan = schedule.plan(size * 3 // 4, size, len(stamps), n)
    model = eta.Eta([eta.scale_cost(s.height, s.width, s.iterations, None, 2) for s in plan])
    preds, i, prev = [], 0, 0.0
    for k, s in enumerate(plan):
        model.targets(k)
        for _ in range(s.iterations):
            model.iteration(k, stamps[i] - prev)  # a scale's first is ignored by the model
            prev = stamps[i]
            preds.append((stamps[i], model.remaining()))
            i += 1
    return preds


def main() -> None:
    with open(sys.argv[1]) as f:
        data = json.load(f)
    print(f"worst error from {', '.join(f'{f:.0%}' for f in FROM)} of the run on")
    for res in data["results"]:
        for run in res["runs"]:
            replayed = worst(replay(run, data["size"]), run["end"])
            logged = worst([tuple(e) for e in run["etas"]], run["end"])
            print(f"{res['pair']} {run['stroke']}: replayed {replayed}; logged {logged}")


if __name__ == "__main__":
    main()
