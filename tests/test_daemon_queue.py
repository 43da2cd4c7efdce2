"""The daemon's job queue and frame resizing, without sockets (fairness is arithmetic)."""

from __future__ import annotations

import numpy as np

from impasto.daemon.jobs import Job, JobQueue
from impasto.daemon.worker import is_out_of_memory, resize_frame
from impasto.shared import protocol
from impasto.shared.errors import OUT_OF_MEMORY, ImpastoError
from impasto.shared.options import JobOptions
from impasto.shared.rawimage import RawImage

PIXEL = RawImage(1, 1, 3, 8, b"\0\0\0")


def job(queue: JobQueue, client: str) -> Job:
    return Job(queue.new_id(), client, client, JobOptions(), PIXEL, [PIXEL])


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
    assert [q.position(j) for j in (a1, b1, c1, a2, a3)] == [0, 1, 2, 3, 4]
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


def test_finished_jobs_expire_after_the_retention_time():
    q = JobQueue(retention=10.0)
    done, running = job(q, "a"), job(q, "a")
    q.push(done)
    q.push(running)
    q.pop(), q.pop()
    running.state = protocol.RUNNING
    q.finish(done, protocol.DONE)
    assert done.content is None  # inputs freed once finished
    assert q.expire(done.finished + 5) == []
    assert q.expire(done.finished + 11) == [done]
    assert q.get(done.id) is None and q.get(running.id) is running


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
