"""Jobs end to end: a real daemon process, real sockets, the real VGG19 at 64 px."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from PIL import Image

from impasto.plugin.client import Accepted, Client, Failed, Progress, Result
from impasto.shared import errors, protocol
from impasto.shared.errors import ImpastoError
from impasto.shared.options import JobOptions
from impasto.shared.rawimage import RawImage
from tests.daemon_fixture import spawn_daemon

FAST = {"size": 64, "scales": 1, "iterations": 3, "frames": 2}


def load(path, long_edge=64, depth=8) -> RawImage:
    img = Image.open(path).convert("RGB")
    img.thumbnail((long_edge, long_edge))
    return RawImage.from_numpy(np.asarray(img, np.float32) / 255.0, depth)


@pytest.fixture(scope="module")
def content(tubingen):
    return load(tubingen)


@pytest.fixture(scope="module")
def style(starry_night):
    return load(starry_night)


def events_until_first(client: Client, job_id: str, kind, timeout=60.0):
    """Poll until an event of ``kind`` for ``job_id`` arrives; return all seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in client.poll(0.5):
            seen.append(event)
            if event.job_id == job_id and isinstance(event, kind):
                return seen
    raise AssertionError(f"no {kind.__name__} for {job_id} in {timeout}s; saw {seen}")


def test_submit_streams_progress_frames_then_the_result(client, tubingen, style):
    content16 = load(tubingen, depth=16)
    events = []
    job = client.submit(
        content16, [style], JobOptions.from_dict(FAST), frame_size=32, frame_depth=8
    )
    result = client.wait(job, on_event=events.append, timeout=120)

    assert isinstance(events[0], Accepted) and events[0].job_id == job
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.iteration for p in progress] == [1, 2, 3] and progress[-1].total == 3
    assert all(np.isfinite(p.losses["total"]) for p in progress)
    frames = [p.frame for p in progress if p.frame is not None]
    assert frames, "no progress frames"
    assert all(max(f.width, f.height) == 32 and f.depth == 8 for f in frames)
    assert events[-1] is result and not result.cancelled and result.iterations == 3
    img = result.image
    assert (img.width, img.height, img.channels, img.depth) == (64, 48, 3, 16)
    out = img.to_numpy()
    assert np.abs(out - content16.to_numpy()).mean() > 0.002  # the engine changed it


def test_three_clients_at_once_each_get_their_own_result(daemon, content, style, grace_hopper):
    contents = [content, load(grace_hopper), RawImage.from_numpy(content.to_numpy()[:, ::-1])]
    results: dict[int, Any] = {}

    def run(i: int) -> None:
        c = daemon.client(timeout=10)
        try:
            job = c.submit(contents[i], [style], {**FAST, "iterations": 2, "frames": 0})
            results[i] = (job, c.wait(job, timeout=180))
        except Exception as exc:  # reported below
            results[i] = exc
        finally:
            c.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert sorted(results) == [0, 1, 2], results
    assert all(isinstance(r, tuple) for r in results.values()), results
    for i, (job, result) in results.items():
        assert result.job_id == job
        assert (result.image.width, result.image.height) == (contents[i].width, contents[i].height)
    assert len({r.job_id for _, r in results.values()}) == 3
    images = [bytes(r.image.data) for _, r in results.values()]
    assert len(set(images)) == 3


def test_cancel_while_queued_and_while_running(client, content, style):
    long = {**FAST, "iterations": 500, "frames": 0}
    running = client.submit(content, [style], long)
    events_until_first(client, running, Progress)
    queued = client.submit(content, [style], long)
    states = {j["job_id"]: j["state"] for j in client.jobs()}
    assert states[running] == "running" and states[queued] == "queued"

    with pytest.raises(ImpastoError) as timed_out:
        client.wait(running, timeout=0.3)
    assert timed_out.value.code == errors.TIMEOUT

    client.cancel(queued)
    with pytest.raises(ImpastoError) as info:
        client.wait(queued, timeout=10)
    assert info.value.code == errors.CANCELLED

    client.cancel(running)
    result = client.wait(running, timeout=30)
    assert result.cancelled and 1 <= result.iterations < 500
    assert result.image.width == content.width  # the best image so far
    states = {j["job_id"]: j["state"] for j in client.jobs()}
    assert states[running] == states[queued] == "cancelled"


def test_a_client_that_disconnects_can_attach_and_fetch_the_result(daemon, content, style):
    first = daemon.client()
    job = first.submit(content, [style], {**FAST, "iterations": 4, "frames": 0})
    events_until_first(first, job, Progress)
    first.close()  # the editor closes mid-job

    second = daemon.client()
    accepted = second.attach(job)
    assert accepted.job_id == job and accepted.state in ("running", "done")
    result = second.wait(job, timeout=120)
    assert result.iterations == 4 and result.image.width == content.width
    second.close()

    third = daemon.client()  # a finished job stays attachable for --retention seconds
    events = []
    again = third.wait(job, on_event=events.append, timeout=10)
    assert bytes(again.image.data) == bytes(result.image.data)
    assert isinstance(events[-1], Result)
    third.close()


def test_unknown_job_ids_are_reported(client):
    for call in (client.attach, client.cancel):
        with pytest.raises(ImpastoError) as info:
            call("0099-deadbeef")
        assert info.value.code == errors.UNKNOWN_JOB


def test_an_engine_error_fails_the_job_and_the_daemon_lives_on(client, content, style):
    job = client.submit(content, [style], {**FAST, "style_layers": ["conv9_9"]})
    with pytest.raises(ImpastoError) as info:
        client.wait(job, timeout=60)
    assert info.value.code == errors.BAD_OPTIONS and "conv9_9" in str(info.value)
    assert client.status()["pid"] > 0
    job = client.submit(content, [style], {**FAST, "iterations": 1, "frames": 0})
    assert client.wait(job, timeout=60).iterations == 1


def test_status_and_jobs_describe_the_daemon(client, daemon):
    info = client.status()
    assert info["endpoint"] == daemon.endpoint and info["pid"] == daemon.proc.pid
    assert info["protocol"] == protocol.VERSION and info["model_loaded"] is True
    assert info["uptime"] > 0 and info["memory"]["rss_mb"] > 50
    assert isinstance(info["queued"], int) and isinstance(info["running"], int)
    assert all({"job_id", "state", "position"} <= set(j) for j in client.jobs())


def test_failed_events_carry_a_code(client, content, style):
    """A queued job cancelled by its id from a second client ends as Failed(cancelled)."""
    other = Client(client.endpoint, timeout=10)
    blocker = client.submit(content, [style], {**FAST, "iterations": 500, "frames": 0})
    queued = client.submit(content, [style], {**FAST, "iterations": 1, "frames": 0})
    other.cancel(queued)
    other.cancel(blocker)
    ends = {}
    deadline = time.monotonic() + 60
    while len(ends) < 2 and time.monotonic() < deadline:
        for e in client.poll(1.0):
            if isinstance(e, Failed | Result):
                ends[e.job_id] = e
    assert isinstance(ends[queued], Failed) and ends[queued].code == errors.CANCELLED
    assert isinstance(ends[blocker], Result | Failed)
    other.close()


def test_sessions_of_the_same_user_share_one_identity(daemon, content, style):
    """Two local clients (two editors of one user) are one identity: one FIFO between
    them, and each can see and follow the other's jobs. Fairness between identities is
    in test_daemon_security.py."""
    a, b = daemon.client(), daemon.client()
    long = {**FAST, "iterations": 500, "frames": 0}
    a_jobs: list[str] = []
    try:
        assert a.connect()["identity"] == b.connect()["identity"] == "local"
        blocker = a.submit(content, [style], long)
        events_until_first(a, blocker, Progress)
        a_jobs = [a.submit(content, [style], long) for _ in range(2)]
        b_job = b.submit(content, [style], long)
        accepted = [e for e in b.poll(1.0) if isinstance(e, Accepted)]
        assert accepted[0].job_id == b_job and accepted[0].position == 2  # after a's two
        positions = {j["job_id"]: j["position"] for j in b.jobs() if j["state"] == "queued"}
        assert positions == {a_jobs[0]: 0, a_jobs[1]: 1, b_job: 2}
        assert b.attach(a_jobs[0]).state == "queued"
    finally:
        for job in (*a_jobs, blocker):
            b.cancel(job)
        b.cancel(b_job)
        a.wait(blocker, timeout=60)
        a.close()
        b.close()


def test_a_job_over_the_daemons_memory_budget_is_refused_with_a_size_that_fits(
    tmp_path, tubingen, style
):
    """`impasto-daemon --memory-budget` reaches the engine's plan: a job that cannot fit
    even tiled is refused before it allocates, naming the budget and a size that fits."""
    proc = spawn_daemon(tmp_path, "--memory-budget", "1100", "--no-warmup")
    try:
        with proc.client(timeout=60) as c:
            big = load(tubingen, long_edge=256)
            job = c.submit(big, [style], JobOptions(size=2048, iterations=2, frames=0))
            with pytest.raises(ImpastoError) as caught:
                c.wait(job, timeout=120)
        assert caught.value.code == errors.TOO_LARGE_FOR_DEVICE
        assert "ask for" in str(caught.value) and "budget" in str(caught.value)
    finally:
        proc.stop()


def test_an_estimate_plans_the_job_on_the_daemons_budget_without_running_it(
    tmp_path, content, style
):
    """`estimate` answers from the daemon's engine: the plan of a job that fits, with a
    default speed until a job has run and the measured one after; the refusal a submit
    would meet (too_large_for_device, naming a size that fits) for one that does not."""
    proc = spawn_daemon(tmp_path, "--memory-budget", "1024", "--no-warmup")
    try:
        with proc.client(timeout=60) as c:
            options = JobOptions(size=64, scales=1, iterations=4, frames=0)
            plan = c.estimate(64, 48, options)
            assert (plan["width"], plan["height"]) == (64, 48)
            assert [(s["width"], s["iterations"], s["tile"]) for s in plan["scales"]] == [
                (64, 4, None)
            ]
            assert 0 < plan["memory_estimate"] <= plan["memory_budget"] == 1024 * 2**20
            assert plan["seconds"] > 0 and plan["speed_measured"] is False
            assert plan["device"]
            assert c.jobs() == []  # nothing was queued or run

            with pytest.raises(ImpastoError) as caught:
                c.estimate(512, 384, {"size": 512})
            assert caught.value.code == errors.TOO_LARGE_FOR_DEVICE
            assert "ask for" in str(caught.value)
            with pytest.raises(ImpastoError) as caught:
                c.estimate(64, 48, {"iterations": -3})
            assert caught.value.code == errors.BAD_OPTIONS

            c.wait(c.submit(content, [style], options), timeout=120)
            after = c.estimate(64, 48, options)
            assert after["speed_measured"] is True and after["seconds"] != plan["seconds"]
    finally:
        proc.stop()


def test_a_daemon_measures_its_speed_as_it_starts(tmp_path):
    """Its warm-up is a small job whose speed the first estimate uses: a dialog opened
    before any run shows this machine's time, not a default guess."""
    proc = spawn_daemon(tmp_path, "--memory-budget", "1024")
    try:
        with proc.client(timeout=60) as c:
            plan = c.estimate(64, 48, JobOptions(size=64, scales=1, iterations=4, frames=0))
            assert plan["speed_measured"] is True and plan["seconds"] > 0
            assert c.jobs() == []  # the warm-up is no job of anyone's
    finally:
        proc.stop()
