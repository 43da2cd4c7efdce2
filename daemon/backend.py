"""The seam between the scheduler and whatever runs jobs.

The scheduler (one thread, no torch) decides what runs next; a backend runs it and
reports back. ``ThreadBackend`` (worker.py) runs worker threads in this process; another
backend (a Ray cluster, a pool of processes) implements the same few methods:

* ``start(report)``: begin; later call ``report(kind, job_id, payload)`` from any thread
  (it must only queue the report: the scheduler reads it on its own thread);
* ``free_slots()``: how many more tasks it takes now; ``submit(task)`` runs one and returns
  a device label; ``cancel(job_id)`` asks a running task to stop (the task's CancelToken
  is set too, for in-process backends); ``finished(job_id)`` frees its slot once its
  DONE/FAILED report was read;
* ``estimate(options, height, width, n_styles)``: the engine's plan for such a job
  (``Engine.preflight``) without running it; blocks, so the server calls it off its loop;
* ``busy()``, ``stop()`` (cancel what runs, end the workers), ``join(timeout)``, ``info()``
  (``devices``, ``model_loaded``, ``engine_error`` for ``status``);
* ``runs_sequences``: whether it takes sequence tasks (their frames are read lazily from
  the daemon's own disk, so only a backend on the daemon's machine can).

Reports, in order per task: STARTED, any PROGRESS ``(fields, frame|None)`` and CHECKPOINT
``(iteration, RawImage)``, then DONE ``(result fields, image)`` or FAILED ``(code,
message)``. READY ``{"device", "error"}`` comes once per worker with job_id None.
A sequence task reports FRAME ``(frame fields, image)`` as each frame finishes (no
CHECKPOINT: a finished frame is its checkpoint), then DONE with the last frame of this
run (None if it finished none) and ``frames`` in the fields.
A ``Task`` holds everything a remote worker needs: plain data and RawImages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from impasto.daemon.engine.types import CancelToken
from impasto.shared.options import JobOptions
from impasto.shared.rawimage import RawImage
from impasto.shared.sequence import SequenceOptions

READY, STARTED, PROGRESS, CHECKPOINT, FRAME, DONE, FAILED = (
    "ready",
    "started",
    "progress",
    "checkpoint",
    "frame",
    "done",
    "failed",
)

Report = Callable[[str, "str | None", Any], None]


@dataclass
class Task:
    job_id: str
    options: JobOptions
    content: RawImage
    styles: list[RawImage]
    init_image: RawImage | None = None  # the job's, or the checkpoint when resuming
    frame_size: int | None = None
    frame_depth: int = 8
    start_iteration: int = 0  # > 0: resumed from a checkpoint taken at this iteration
    cancel: CancelToken = field(default_factory=CancelToken)
    # A sequence: ``content`` is frame 0 and ``frames`` every content frame, read one at
    # a time. Resumed after ``start_frame`` finished frames, the last being ``previous``.
    sequence: SequenceOptions | None = None
    frames: Sequence[RawImage] | None = None
    start_frame: int = 0
    previous: RawImage | None = None


class Backend(Protocol):
    runs_sequences: bool

    def start(self, report: Report) -> None: ...
    def free_slots(self) -> int: ...
    def submit(self, task: Task) -> str: ...
    def cancel(self, job_id: str) -> None: ...
    def finished(self, job_id: str) -> None: ...
    def estimate(
        self, options: JobOptions, height: int, width: int, n_styles: int
    ) -> dict[str, Any]: ...
    def busy(self) -> bool: ...
    def stop(self) -> None: ...
    def join(self, timeout: float) -> None: ...
    def info(self) -> dict[str, Any]: ...
