"""Job records and the queue: fair FIFO between identities, every operation O(1).

Only the scheduler (on the server's loop thread) touches these objects; a backend gets a
job's inputs handed over and reports back by job id, so nothing here needs a lock except
the job's one CancelToken, which the engine reads from its thread.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from impasto.daemon.engine.types import CancelToken
from impasto.shared import protocol
from impasto.shared.options import JobOptions
from impasto.shared.sequence import SequenceOptions

DEFAULT_RETENTION = 3600.0  # seconds a finished job's result stays attachable


@dataclass(eq=False)
class Job:
    """One style-transfer job from submission until its result expires.

    Pixels are not held here: inputs, checkpoints and results live in the journal and
    are read when needed, so a long queue costs a few hundred bytes a job in memory.
    """

    id: str
    owner: str  # the proven identity that submitted it: ownership and fairness
    client_name: str
    options: JobOptions
    n_styles: int = 1
    has_init: bool = False
    frame_size: int | None = None  # long-edge cap of progress frames
    frame_depth: int = 8
    depth: int = 8  # the content's depth: the result's
    nbytes: int = 0  # input bytes, counted against the queue caps
    state: str = protocol.QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None  # wall clock, so retention survives a restart
    subscribers: set[bytes] = field(default_factory=set)  # ROUTER identities
    cancel: CancelToken = field(default_factory=CancelToken)
    progress: dict[str, Any] | None = None  # latest progress header fields
    frame: Any = None  # latest progress frame (RawImage)
    result: dict[str, Any] | None = None  # result header fields
    error: tuple[str, str] | None = None  # (code, message)
    device: str = ""
    removed: bool = False  # cancelled while queued: skipped when its turn comes
    n_frames: int = 0  # a sequence's content frames (0: a still image)
    sequence: SequenceOptions | None = None
    frames_done: int = 0  # a sequence's finished frames, stored in the journal

    @property
    def ended(self) -> bool:
        return self.state in (protocol.DONE, protocol.FAILED_STATE, protocol.CANCELLED)

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
            **({"frames": self.frames_done, "n_frames": self.n_frames} if self.n_frames else {}),
        }


def new_job_id(serial: int) -> str:
    return f"{serial:04d}-{secrets.token_hex(4)}"


class JobQueue:
    """The queued jobs, in fair round-robin order between owners.

    Each owner has its own FIFO; owners take turns, so one identity submitting twenty
    jobs cannot starve another that submits one. push, pop and remove are O(1) (a
    removed job is skipped when its turn comes); a new job's position costs O(owners).
    Measured at 20k queued jobs: BENCHMARKS.md, "daemon".
    """

    def __init__(self) -> None:
        self._queues: dict[str, deque[Job]] = {}
        self._live: dict[str, int] = {}  # queued and not removed, per owner
        self._turns: deque[str] = deque()  # owners with queued jobs, next first
        self._bytes: dict[str, int] = {}
        self.total = 0
        self.total_bytes = 0

    def __len__(self) -> int:
        return self.total

    def count(self, owner: str) -> int:
        return self._live.get(owner, 0)

    def bytes_of(self, owner: str) -> int:
        return self._bytes.get(owner, 0)

    def push(self, job: Job) -> int:
        """Queue a job; returns its position (0 = runs next)."""
        queue = self._queues.get(job.owner)
        if queue is None:
            queue = self._queues[job.owner] = deque()
            self._turns.append(job.owner)
        position = self._position_at(job.owner, self._live.get(job.owner, 0))
        queue.append(job)
        self._count(job, +1)
        return position

    def pop(self) -> Job | None:
        """The next job to run: the head of the next owner's FIFO."""
        while self._turns:
            owner = self._turns.popleft()
            queue = self._queues[owner]
            while queue and queue[0].removed:
                queue.popleft()
            if not queue:
                del self._queues[owner]
                continue
            job = queue.popleft()
            self._count(job, -1)
            if self._live.get(owner):
                self._turns.append(owner)
            else:
                del self._queues[owner]
            return job
        return None

    def remove(self, job: Job) -> bool:
        """Take a queued job out of the queue (cancel); False if it was not queued."""
        if job.removed or job.state != protocol.QUEUED or job.owner not in self._queues:
            return False
        job.removed = True
        self._count(job, -1)
        return True

    def _count(self, job: Job, sign: int) -> None:
        self._live[job.owner] = self._live.get(job.owner, 0) + sign
        self._bytes[job.owner] = self._bytes.get(job.owner, 0) + sign * job.nbytes
        self.total += sign
        self.total_bytes += sign * job.nbytes
        if not self._live[job.owner]:
            del self._live[job.owner]
            self._bytes.pop(job.owner, None)

    def _position_at(self, owner: str, k: int) -> int:
        """Position of the owner's k-th (0-based) live job: k full rounds before it, then
        the owners ahead of it in turn order that still have a job in round k."""
        ahead, seen = 0, False
        for other in self._turns:
            n = self._live.get(other, 0)
            if other == owner:
                seen = True
                ahead += k
                continue
            ahead += min(n, k) + (1 if n > k and not seen else 0)
        return ahead

    def order(self) -> list[Job]:
        """Queued jobs in the order they will run (O(n), for listings)."""
        queues = {o: deque(j for j in q if not j.removed) for o, q in self._queues.items()}
        turns = deque(o for o in self._turns if queues.get(o))
        out: list[Job] = []
        while turns:
            owner = turns.popleft()
            out.append(queues[owner].popleft())
            if queues[owner]:
                turns.append(owner)
        return out

    def positions(self) -> dict[str, int]:
        return {job.id: i for i, job in enumerate(self.order())}
