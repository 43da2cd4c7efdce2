"""The Ray backend end to end: a real local Ray cluster (started here: 2 CPUs, a small
object store, token auth), a real daemon with two actors in front of it, real sockets,
the real VGG19 at 64 px. Part of the whole suite when Ray (the ``cluster`` extra) is
installed; ``pytest -m ray`` runs them alone."""

from __future__ import annotations

import time

import pytest

from impasto.plugin.client import Progress, Result
from impasto.shared import errors
from impasto.shared.errors import NOT_ALLOWED, ImpastoError
from tests.daemon_fixture import daemon_env, spawn_daemon
from tests.ray_cluster import kill_actor, start_head
from tests.test_cli import impasto
from tests.test_daemon_jobs import FAST, events_until_first, load

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    head = start_head(num_cpus=2)
    yield head
    head.stop()


@pytest.fixture(scope="module")
def ray_daemon(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-daemon")
    env = {**daemon_env(root), **cluster.env}
    args = ("--ray", cluster.address, "--ray-actors", "2", "--retention", "600")
    proc = spawn_daemon(root, *args, env=env)
    try:
        wait_status(proc, lambda info: [a["state"] for a in actors(info)] == ["ready"] * 2, 240)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def pair(tubingen, starry_night):
    """A content and a style image at 64 px."""
    return load(tubingen), load(starry_night)


def actors(info: dict) -> list[dict]:
    return info.get("cluster", {}).get("actors", [])


def wait_status(daemon, predicate, timeout: float = 60.0) -> dict:
    """Poll the daemon's status until ``predicate(info)`` holds; return that status."""
    deadline = time.monotonic() + timeout
    client = daemon.client()
    try:
        while time.monotonic() < deadline:
            info = client.status()
            if predicate(info):
                return info
            time.sleep(0.1)
    finally:
        client.close()
    raise AssertionError(f"status never matched in {timeout}s; last: {info.get('cluster')}")


def test_status_lists_the_actors_their_devices_and_work(ray_daemon):
    info = wait_status(ray_daemon, lambda i: len(actors(i)) == 2)
    assert [a["name"].rsplit("-", 1)[1] for a in actors(info)] == ["0", "1"]
    for actor in actors(info):
        assert actor["device"].startswith("cpu") and actor["node"]
        assert actor["running"] is None and actor["queue"] == 0
    assert info["model_loaded"] and info["engine_error"] is None
    assert len(info["devices"]) == 2
    shown = impasto("daemon", "status", "--endpoint", ray_daemon.endpoint, env=ray_daemon.env)
    lines = [line for line in shown.stdout.splitlines() if line.startswith("actor:")]
    assert len(lines) == 2 and all(": ready, queue 0, running nothing" in x for x in lines), shown


def test_two_jobs_run_on_two_different_actors_at_once(ray_daemon, pair, grace_hopper):
    content, style = pair
    # Long timeouts: the second client is silent while the first one waits (plugin/client.py
    # counts silence even while nobody polls it).
    clients = [ray_daemon.client(timeout=120) for _ in range(2)]
    options = {**FAST, "iterations": 30, "frames": 0}
    jobs = [
        c.submit(img, [style], options)
        for c, img in zip(clients, [content, load(grace_hopper)], strict=True)
    ]
    busy = wait_status(ray_daemon, lambda i: {a["running"] for a in actors(i)} == set(jobs))
    running_on = {a["running"]: a["name"] for a in actors(busy)}
    assert len(set(running_on.values())) == 2
    for client, job in zip(clients, jobs, strict=True):
        result = client.wait(job, timeout=180)
        assert result.iterations == 30 and not result.cancelled
        client.close()


def test_frames_arrive_in_order_while_the_job_runs(ray_daemon, pair):
    content, style = pair
    client, watcher = ray_daemon.client(timeout=10), ray_daemon.client(timeout=10)
    job = client.submit(content, [style], {**FAST, "iterations": 12, "frames": 4}, frame_size=32)
    states_at_first_frame = []

    def on_event(event):
        if isinstance(event, Progress) and event.frame is not None and not states_at_first_frame:
            states_at_first_frame.extend(j["state"] for j in watcher.jobs() if j["job_id"] == job)

    events = []
    result = client.wait(job, on_event=lambda e: (events.append(e), on_event(e)), timeout=120)
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.iteration for p in progress] == list(range(1, 13))
    frames = [p.frame for p in progress if p.frame is not None]
    assert len(frames) >= 3 and all(max(f.width, f.height) == 32 for f in frames)
    assert states_at_first_frame == ["running"]  # streamed, not delivered at the end
    assert events[-1] is result and result.iterations == 12
    client.close()
    watcher.close()


def test_cancel_reaches_the_running_actor(ray_daemon, pair):
    content, style = pair
    client = ray_daemon.client(timeout=10)
    job = client.submit(content, [style], {**FAST, "iterations": 5000, "frames": 0})
    seen = events_until_first(client, job, Progress)
    client.cancel(job)
    events = events_until_first(client, job, Result, timeout=60)
    progress = [e.iteration for e in seen + events if isinstance(e, Progress)]
    result = events[-1]
    assert result.cancelled and result.iterations < 5000
    # The engine stopped within a few iterations of the last one streamed before the
    # cancel arrived (at 64 px an iteration takes tens of milliseconds).
    assert result.iterations <= max(progress) + 25
    wait_status(ray_daemon, lambda i: all(a["running"] is None for a in actors(i)), 10)
    client.close()


def test_a_style_goes_back_to_the_actor_that_holds_its_targets(ray_daemon, pair, grace_hopper):
    content, _ = pair
    style = load(grace_hopper)  # no actor has run this style yet
    client = ray_daemon.client(timeout=10)
    options = {**FAST, "iterations": 2, "frames": 0}
    before = {a["name"]: a["done"] for a in actors(client.status())}
    first = client.wait(client.submit(content, [style], options), timeout=120)
    after_first = {a["name"]: a["done"] for a in actors(client.status())}
    (holder,) = [n for n in before if after_first[n] > before[n]]
    # Without affinity the other actor (idle longer) would take the next job.
    second = client.wait(client.submit(content, [style], options), timeout=120)
    after_second = {a["name"]: a["done"] for a in actors(client.status())}
    assert after_second[holder] == after_first[holder] + 1
    assert sum(after_second.values()) == sum(after_first.values()) + 1
    assert first.iterations == second.iterations == 2
    client.close()


def test_a_killed_actor_job_finishes_on_the_other(ray_daemon, cluster, pair):
    """Last in this module: it leaves one actor dead."""
    content, style = pair
    client = ray_daemon.client(timeout=10)
    # Long enough to outlast the kill: its driver process takes seconds to join the
    # cluster, and under load a 40-iteration job had finished on the victim by then.
    job = client.submit(content, [style], {**FAST, "iterations": 400, "frames": 20})
    deadline = time.monotonic() + 120
    while not any(
        isinstance(e, Progress) and e.frame is not None for e in client.poll(0.5)
    ):  # a frame: the daemon now holds a checkpoint of the job
        assert time.monotonic() < deadline, "no progress frame"
    info = wait_status(ray_daemon, lambda i: job in {a["running"] for a in actors(i)})
    (victim,) = [a["name"] for a in actors(info) if a["running"] == job]
    kill_actor(cluster, victim)

    result = client.wait(job, timeout=180)
    assert result.iterations == 400 and not result.cancelled
    assert result.image.width == content.width
    info = wait_status(ray_daemon, lambda i: all(a["running"] is None for a in actors(i)), 30)
    states = {a["name"]: a["state"] for a in actors(info)}
    assert states[victim] == "dead"
    assert [s for n, s in states.items() if n != victim] == ["ready"]
    assert f"actor {victim} died" in ray_daemon.log_text
    assert "from the latest frame" in ray_daemon.log_text
    client.close()


def test_an_estimate_is_answered_by_an_actors_engine(ray_daemon):
    """With --ray the plan comes from a ready actor's warm engine, refusals included."""
    with ray_daemon.client(timeout=60) as client:
        plan = client.estimate(64, 48, FAST)
        assert [(s["width"], s["height"], s["iterations"]) for s in plan["scales"]] == [(64, 48, 3)]
        assert plan["device"].startswith("impasto-") and plan["seconds"] > 0
        with pytest.raises(ImpastoError) as caught:
            client.estimate(64, 48, {**FAST, "memory_budget": 256})
        assert caught.value.code == errors.TOO_LARGE_FOR_DEVICE


def test_a_sequence_is_refused_naming_ray(ray_daemon, pair):
    content, style = pair
    client = ray_daemon.client()
    try:
        with pytest.raises(ImpastoError) as info:
            client.submit_sequence([content, content], [style], FAST)
        assert info.value.code == NOT_ALLOWED and "--ray" in str(info.value)
        assert client.status()["uploads"] == 0  # refused at submit, before any pixel
    finally:
        client.close()
