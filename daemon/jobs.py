"""Job records and the queue: fair FIFO between clients, results kept for a while.

Only the server's loop thread touches these objects (workers get a job handed over and
report back through the server), so nothing here needs a lock except the cancel flag,
which is a threading.Event the worker reads.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from impasto.shared import protocol
from impasto.shared.options import JobOptions
from impasto.shared.rawimage import RawImage

DEFAULT_RETENTION = 3600.0  # seconds a finished job's result stays attachable


@dataclass(eq=False)
class Job:
    """One style-transfer job from submission until its result expires."""

    id: str
    client_id: str  # the submitting client (stable across its reconnects): fairness
    client_name: str
    options: JobOptions
    content: RawImage
    styles: list[RawImage]
    init_image: RawImage | None = None
    frame_size: int | None = None  # long-edge cap of progress frames
    frame_depth: int = 8
    state: str = protocol.QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None  # monotonic clock, for retention
    subscribers: set[bytes] = field(default_factory=set)  # ROUTER identities
    cancel_event: threading.Event = field(default_factory=threading.Event)
    token: Any = None  # the engine's CancelToken while running (set by the worker)
    progress: dict[str, Any] | None = None  # latest progress header fields
    frame: RawImage | None = None  # latest progress frame
    result: dict[str, Any] | None = None  # result header fields
    image: RawImage | None = None  # the result
    error: tuple[str, str] | None = None  # (code, message)
    device: str = ""

    @property
    def ended(self) -> bool:
        return self.state in (protocol.DONE, protocol.FAILED_STATE, protocol.CANCELLED)

    def request_cancel(self) -> None:
        """Ask a running job to stop; the engine checks its token every iteration."""
        self.cancel_event.set()
        if self.token is not None:
            self.token.cancel()

    def drop_inputs(self) -> None:
        """Free the input pixels once the engine no longer needs them."""
        self.content = self.styles = self.init_image = None  # type: ignore[assignment]

    def summary(self, position: int) -> dict[str, Any]:
        """What ``jobs`` reports: no pixels, nothing secret."""
        progress = self.progress or {}
        return {
            "job_id": self.id,
            "state": self.state,
            "position": position,
            "client": self.client_name,
            "iteration": progress.get("iteration", 0),
            "total": progress.get("total", self.options.total_iterations()),
            "created": self.created,
            "device": self.device,
            "error": self.error[0] if self.error else None,
        }


class JobQueue:
    """All known jobs, and the queued ones in fair round-robin order between clients.

    Each client has its own FIFO; clients take turns, so one client submitting twenty
    jobs cannot starve another that submits one.
    """

    def __init__(self, retention: float = DEFAULT_RETENTION):
        self.retention = retention
        self.jobs: dict[str, Job] = {}
        self._queues: dict[str, deque[Job]] = {}
        self._turns: deque[str] = deque()  # clients with queued jobs, next first
        self._serial = itertools.count(1)

    def new_id(self) -> str:
        return f"{next(self._serial):04d}-{secrets.token_hex(4)}"

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def push(self, job: Job) -> int:
        """Queue a job; returns its position (0 = runs next)."""
        self.jobs[job.id] = job
        queue = self._queues.setdefault(job.client_id, deque())
        queue.append(job)
        if job.client_id not in self._turns:
            self._turns.append(job.client_id)
        return self.position(job)

    def pop(self) -> Job | None:
        """The next job to run: the head of the next client's FIFO."""
        while self._turns:
            client = self._turns.popleft()
            queue = self._queues.get(client)
            if not queue:
                self._queues.pop(client, None)
                continue
            job = queue.popleft()
            if queue:
                self._turns.append(client)
            else:
                del self._queues[client]
            return job
        return None

    def remove(self, job: Job) -> bool:
        """Take a queued job out of the queue (cancel); False if it was not queued."""
        queue = self._queues.get(job.client_id)
        if not queue or job not in queue:
            return False
        queue.remove(job)
        if not queue:
            del self._queues[job.client_id]
            self._turns.remove(job.client_id)
        return True

    def order(self) -> list[Job]:
        """Queued jobs in the order they will run."""
        queues = {c: list(q) for c, q in self._queues.items()}
        turns = deque(self._turns)
        out: list[Job] = []
        while turns:
            client = turns.popleft()
            out.append(queues[client].pop(0))
            if queues[client]:
                turns.append(client)
        return out

    def position(self, job: Job) -> int:
        if job.state != protocol.QUEUED:
            return 0
        for i, queued in enumerate(self.order()):
            if queued is job:
                return i
        return 0

    def positions(self) -> dict[str, int]:
        return {job.id: i for i, job in enumerate(self.order())}

    def finish(self, job: Job, state: str) -> None:
        job.state = state
        job.finished = time.monotonic()
        job.drop_inputs()

    def expire(self, now: float | None = None) -> list[Job]:
        """Forget ended jobs whose retention time has passed; returns them."""
        now = time.monotonic() if now is None else now
        gone = [
            j
            for j in self.jobs.values()
            if j.ended and j.finished is not None and now - j.finished > self.retention
        ]
        for job in gone:
            del self.jobs[job.id]
        return gone

    def forget_subscriber(self, identity: bytes) -> None:
        for job in self.jobs.values():
            job.subscribers.discard(identity)
