"""The daemon's job queue and frame resizing, without sockets (fairness is arithmetic)."""

from __future__ import annotations

import random

import numpy as np

from impasto.daemon.jobs import Job, JobQueue, new_job_id
from impasto.daemon.limits import Limits
from impasto.daemon.worker import client_frames, is_out_of_memory, resize_frame
from impasto.shared.errors import OUT_OF_MEMORY, QUEUE_FULL, ImpastoError
from impasto.shared.options import JobOptions

SERIAL = iter(range(1, 10**9))


def job(_queue: JobQueue, owner: str, nbytes: int = 10) -> Job:
    return Job(new_job_id(next(SERIAL)), owner, owner, JobOptions(), nbytes=nbytes)


def test_clients_take_turns_and_each_keeps_its_own_order():
    q = JobQueue()
    a1, a2, a3 = (job(q, "a") for _ in range(3))
    b1 = job(q, "b")
    for j in (a1, a2, a3):
        q.push(j)
    assert q.push(b1) == 1  # b's single job runs second, not fourth
    c1 = job(q, "c")
    assert q.push(c1) == 2
    assert q.order() == [a1, b1, c1, a2, a3]
    assert [q.positions()[j.id] for j in (a1, b1, c1, a2, a3)] == [0, 1, 2, 3, 4]
    assert [q.pop() for _ in range(5)] == [a1, b1, c1, a2, a3]
    assert q.pop() is None and len(q) == 0


def test_removing_a_queued_job_closes_the_gap():
    q = JobQueue()
    a1, b1, a2 = job(q, "a"), job(q, "b"), job(q, "a")
    for j in (a1, b1, a2):
        q.push(j)
    assert q.remove(b1) and not q.remove(b1)
    assert q.order() == [a1, a2]
    q.remove(a1)
    q.remove(a2)
    assert q.pop() is None


def test_positions_from_the_counts_match_the_real_order_under_churn():
    """push answers a position without walking the queue; it must agree with order()."""
    rng = random.Random(7)
    q = JobQueue()
    for _ in range(600):
        action = rng.random()
        if action < 0.6:
            j = job(q, rng.choice("abcde"))
            position = q.push(j)
            assert q.order().index(j) == position
        elif action < 0.8:
            q.pop()
        elif q.order():
            q.remove(rng.choice(q.order()))
    assert len(q) == len(q.order())


def test_the_queue_counts_jobs_and_bytes_per_owner():
    q = JobQueue()
    a1, a2, b1 = job(q, "a", 100), job(q, "a", 50), job(q, "b", 7)
    for j in (a1, a2, b1):
        q.push(j)
    assert (q.count("a"), q.bytes_of("a"), q.total_bytes, len(q)) == (2, 150, 157, 3)
    q.remove(a2)
    assert (q.count("a"), q.bytes_of("a"), len(q)) == (1, 100, 2)
    assert q.pop() is a1 and q.count("a") == 0 and q.bytes_of("a") == 0


def test_caps_name_the_limit_and_its_flag():
    limits = Limits(jobs_per_client=2, bytes_total=1 << 20)
    limits.check_submit(1, 1, 10, 0, 0)
    try:
        limits.check_submit(2, 2, 10, 0, 0)
        raise AssertionError("not refused")
    except ImpastoError as exc:
        assert exc.code == QUEUE_FULL and "2 queued jobs per client" in str(exc)
        assert "--max-queued-jobs" in str(exc)
    try:
        limits.check_submit(0, 0, 2 << 20, 0, 0)
        raise AssertionError("not refused")
    except ImpastoError as exc:
        assert "1 queued MiB in all" in str(exc)


def test_clients_see_frames_on_the_iterations_the_engine_would_choose():
    assert client_frames(0, 100) == set()
    assert client_frames(4, 100) == {25, 50, 75, 100}
    assert client_frames(3, 10) == {4, 7, 10}


def test_frames_shrink_to_the_asked_long_edge_and_keep_channels():
    rng = np.random.default_rng(1)
    arr = rng.random((60, 120, 4), dtype=np.float32)
    small = resize_frame(arr, 30)
    assert small.shape == (15, 30, 4)
    assert abs(float(small.mean()) - float(arr.mean())) < 0.02
    assert resize_frame(arr, None) is arr and resize_frame(arr, 500) is arr


def test_out_of_memory_is_recognised_in_its_forms():
    assert is_out_of_memory(ImpastoError("x", OUT_OF_MEMORY))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
