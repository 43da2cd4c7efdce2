"""Sequence (animation) jobs through a real daemon: frames streamed in order, cancel,
attach with replay from disk, resume after kill -9, and bad submits refused up front.

Frames are the synthetic pan (tests/sequence_data.py) at 64x48 with few iterations and
the shallow layers, so a frame takes a fraction of a second on the 2-core machine.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from impasto.plugin.client import Client, Failed, FrameDone, Progress, Result
from impasto.shared import errors, protocol
from impasto.shared.errors import ImpastoError
from impasto.shared.rawimage import RawImage
from impasto.shared.sequence import MAX_SEQUENCE_FRAMES
from tests.daemon_fixture import local_dealer, spawn_daemon
from tests.sequence_data import make_sequence

SHALLOW = {"style_layers": ["conv1_1", "conv2_1", "conv3_1"], "content_layers": ["conv2_2"]}
QUICK = {"size": None, "iterations": 6, "frames": 0, "scales": 1, **SHALLOW}
SLOW = {**QUICK, "iterations": 40}  # a frame long enough to cancel or kill in


@pytest.fixture(scope="module")
def frames() -> list[RawImage]:
    return [RawImage.from_numpy(f, 8) for f in make_sequence(n=6, width=64, height=48).frames]


@pytest.fixture(scope="module")
def style(starry_night) -> RawImage:
    img = Image.open(starry_night).convert("RGB").resize((64, 40))
    return RawImage.from_numpy(np.asarray(img, np.float32) / 255.0, 8)


def collect(client: Client, job: str, until: type = Result, timeout: float = 300.0) -> list:
    """The job's events up to the first of type ``until`` (included)."""
    seen: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in client.poll(0.5):
            if event.job_id != job:
                continue
            seen.append(event)
            if isinstance(event, until | Failed):
                return seen
    raise AssertionError(f"no {until.__name__} for {job} within {timeout}s; saw {seen}")


def of(kind, events: list) -> list:
    return [e for e in events if isinstance(e, kind)]


def test_a_sequence_streams_each_frame_in_order_then_the_result(client, frames, style):
    job = client.submit_sequence(frames[:4], [style], QUICK, frame_depth=16)
    events = collect(client, job)
    done, result = of(FrameDone, events), events[-1]
    assert [f.index for f in done] == [0, 1, 2, 3] and {f.n_frames for f in done} == {4}
    assert [f.warm for f in done] == [False, True, True, True]
    for f in done:
        assert (f.image.width, f.image.height, f.image.depth) == (64, 48, 16)
        assert f.iterations == (6 if f.index == 0 else 3) and "style" in f.losses
    progress = of(Progress, events)
    assert {p.n_frames for p in progress} == {4}
    assert {p.frame_index for p in progress} == {0, 1, 2, 3}
    # progress of a frame comes before that frame's FrameDone
    order = [
        (e.frame_index or 0) if isinstance(e, Progress) else e.index
        for e in events
        if isinstance(e, Progress | FrameDone)
    ]
    assert order == sorted(order)
    assert isinstance(result, Result) and result.frames == 4 and not result.cancelled
    assert bytes(result.image.data) == bytes(done[-1].image.data)
    listed = next(j for j in client.jobs() if j["job_id"] == job)
    assert (listed["frames"], listed["n_frames"], listed["state"]) == (4, 4, "done")


def test_cancel_keeps_the_finished_frames_and_the_daemon_goes_on(client, frames, style):
    job = client.submit_sequence(frames, [style], SLOW)
    collect(client, job, until=FrameDone)
    client.cancel(job)
    events = collect(client, job)
    result = events[-1]
    assert isinstance(result, Result) and result.cancelled
    assert 1 <= result.frames < len(frames)
    assert len(of(FrameDone, events)) == result.frames - 1  # the first was read above
    assert (result.image.width, result.image.height) == (64, 48)
    # cancelled before its first frame finished: no image, as for a queued job
    early = client.submit_sequence(frames[:2], [style], SLOW)
    collect(client, early, until=Progress)
    client.cancel(early)
    failed = collect(client, early)[-1]
    assert isinstance(failed, Failed) and failed.code == errors.CANCELLED
    # and the daemon still runs jobs
    again = client.submit_sequence(frames[:2], [style], QUICK)
    assert client.wait(again, timeout=300).frames == 2


def test_attach_from_another_client_replays_the_finished_frames(daemon, frames, style):
    first = daemon.client()
    job = first.submit_sequence(frames[:5], [style], {**QUICK, "iterations": 16})
    seen = of(FrameDone, collect(first, job, until=FrameDone))
    frame0 = bytes(seen[0].image.data)
    first.close()  # the editor went away mid-sequence

    second = daemon.client()
    try:
        second.attach(job)
        events = collect(second, job)
        done = of(FrameDone, events)
        assert [f.index for f in done] == [0, 1, 2, 3, 4]  # replayed, then live, once each
        assert bytes(done[0].image.data) == frame0
        assert isinstance(events[-1], Result) and events[-1].frames == 5
        # after the end too: every frame from disk, then the result
        second.attach(job)
        events = collect(second, job)
        assert [f.index for f in of(FrameDone, events)] == [0, 1, 2, 3, 4]
        assert bytes(events[-1].image.data) == bytes(done[-1].image.data)
    finally:
        second.close()


def test_kill_9_mid_sequence_resumes_after_the_finished_frames(tmp_path, frames, style):
    old = spawn_daemon(tmp_path)
    client = old.client(timeout=60.0)  # the model loads first
    job = client.submit_sequence(frames[:5], [style], {**QUICK, "iterations": 30})
    before = of(FrameDone, collect(client, job, until=FrameDone))
    before += of(FrameDone, collect(client, job, until=FrameDone))
    client.close()
    old.kill()
    finished = len(before)  # at least these two are stored (stored before sent)

    new = spawn_daemon(tmp_path, "--no-warmup", endpoint=old.endpoint, env=old.env)
    try:
        client = new.client(timeout=60.0)
        client.attach(job)
        events = collect(client, job)
        done = of(FrameDone, events)
        assert [f.index for f in done] == [0, 1, 2, 3, 4]
        assert bytes(done[0].image.data) == bytes(before[0].image.data)
        assert bytes(done[1].image.data) == bytes(before[1].image.data)
        # only the frames after the stored ones ran again
        ran = {p.frame_index for p in of(Progress, events)}
        assert ran and min(ran) >= finished, ran
        resumed = [line for line in new.log_text.splitlines() if "resuming after frame" in line]
        assert len(resumed) == 1 and int(resumed[0].split("after frame ")[1].split()[0]) >= 2
        result = events[-1]
        assert isinstance(result, Result) and result.frames == 5 and not result.cancelled
        client.close()
    finally:
        new.stop()


def raw_submit(daemon, **fields) -> protocol.Message:
    sock = local_dealer(daemon.endpoint)
    try:
        sock.send_multipart(protocol.encode(protocol.SUBMIT, {"req": 1, **fields}))
        assert sock.poll(10_000)
        return protocol.decode(sock.recv_multipart(), protocol.REPLIES, None)
    finally:
        sock.close(0)


def test_bad_sequence_submits_are_refused_before_anything_runs(daemon, client, frames, style):
    base = {"options": QUICK, "n_styles": 1, "n_frames": 2}
    frame, other = [64, 48, 3, 8], [2, 2, 3, 8]

    reply = raw_submit(daemon, **base, has_init=True, img=[frame, frame, other, other])
    assert reply.type == protocol.ERROR and "has_init" in reply["message"]

    reply = raw_submit(daemon, **{**base, "n_frames": MAX_SEQUENCE_FRAMES + 1}, img=[frame, other])
    assert reply["code"] == errors.BAD_MESSAGE and str(MAX_SEQUENCE_FRAMES) in reply["message"]

    reply = raw_submit(daemon, **base, img=[frame, [65, 48, 3, 8], other])
    assert reply["code"] == errors.BAD_IMAGE
    assert "frame 1 is 65x48, frame 0 is 64x48" in reply["message"]

    reply = raw_submit(daemon, **base, sequence={"temporal_wieght": 1.0}, img=[frame] * 3)
    assert reply["code"] == errors.BAD_OPTIONS and "temporal_wieght" in reply["message"]

    huge = [4096, 4096, 4, 16]  # 128 MiB a frame: 1000 of them pass every disk cap
    reply = raw_submit(
        daemon, **{**base, "n_frames": MAX_SEQUENCE_FRAMES}, img=[huge] * 1001, frame_depth=16
    )
    assert reply["code"] == errors.QUEUE_FULL
    assert "1000 frames of 4096x4096" in reply["message"]
    assert "--max-queued-mb" in reply["message"]

    # the client finds a frame of another size while uploading: the upload is dropped
    bigger = RawImage.from_numpy(np.zeros((50, 64, 3), np.float32), 8)
    with pytest.raises(ImpastoError) as info:
        client.submit_sequence([frames[0], bigger], [style], QUICK)
    assert info.value.code == errors.BAD_IMAGE and "frame 1 is 64x50" in str(info.value)
    assert client.status()["uploads"] == 0
    assert all(j["state"] in ("done", "cancelled", "failed") for j in client.jobs())
