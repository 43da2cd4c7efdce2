"""The Ray actor: one engine kept warm on one device, one job at a time, streamed back.

It runs the daemon's own ``Worker.run_task`` (its OOM retry, progress fields, frame
resizing, checkpoints), so a job behaves the same on a cluster as in one process. ``run`` is a Ray
streaming generator: the engine works in a thread and every report it makes is yielded
as soon as it exists. ``cancel`` sits in its own concurrency group, so it reaches the
running job at once instead of queueing behind it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

from impasto.daemon.backend import DONE, FAILED, Task
from impasto.daemon.engine.types import CancelToken
from impasto.daemon.worker import Worker
from impasto.shared.errors import ImpastoError
from impasto.shared.options import JobOptions

log = logging.getLogger("impasto.daemon.cluster.actor")

JOB_GROUP, CONTROL_GROUP = "job", "control"
CONCURRENCY_GROUPS = {JOB_GROUP: 1, CONTROL_GROUP: 2}


def task_spec(task: Task) -> dict[str, Any]:
    """What travels to the actor: the task's plain data, not its in-process CancelToken."""
    return {f.name: getattr(task, f.name) for f in dataclasses.fields(task) if f.name != "cancel"}


# Ray 2.60's typed overloads of ray.remote lack ``concurrency_groups``: call it untyped.
remote: Any = ray.remote


@remote(concurrency_groups=CONCURRENCY_GROUPS)
class EngineActor:
    def __init__(self, device: str, max_pixels: int, warmup: bool, weights_dir: Path | None):
        self._outbox: queue.Queue | None = None
        self._ready: dict[str, Any] = {}
        self._tasks: dict[str, Task] = {}
        self._cancelled: set[str] = set()  # cancels that arrived before their job
        self._lock = threading.Lock()
        self.worker = Worker(device, self._collect, max_pixels, warmup, weights_dir)
        self.worker.load()  # synchronously: ready() answers once the engine is warm

    def _collect(self, kind: str, job_id: str | None, payload: Any) -> None:
        if job_id is None:  # READY, once, from load()
            error = payload["error"]
            self._ready = {"error": None if error is None else str(error)}
        elif self._outbox is not None:
            self._outbox.put((kind, payload))

    @ray.method(concurrency_group=CONTROL_GROUP)
    def ready(self) -> dict[str, Any]:
        """Where this actor runs and whether its engine loaded."""
        device = self.worker.resolved_device or self.worker.device
        return {**self._ready, "device": device, "node": socket.gethostname(), "pid": os.getpid()}

    @ray.method(concurrency_group=CONTROL_GROUP)
    def cancel(self, job_id: str) -> bool:
        with self._lock:
            task = self._tasks.get(job_id)
            if task is None:
                self._cancelled.add(job_id)
                return False
        task.cancel.cancel()
        return True

    @ray.method(concurrency_group=CONTROL_GROUP)
    def estimate(
        self, options: JobOptions, height: int, width: int, n_styles: int
    ) -> tuple[str, Any]:
        """("ok", the engine's plan) or (error code, message): a job's plan from this
        actor's warm engine and its measured speed, beside a running job."""
        try:
            return "ok", self.worker.estimate(options, height, width, n_styles)
        except ImpastoError as exc:
            return exc.code, str(exc)

    @ray.method(concurrency_group=JOB_GROUP, num_returns="streaming")
    def run(self, spec: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """Yield the worker's (kind, payload) reports, ending with DONE or FAILED."""
        task = Task(**spec, cancel=CancelToken())
        self._outbox = outbox = queue.Queue()
        with self._lock:
            self._tasks[task.job_id] = task
            if task.job_id in self._cancelled:
                self._cancelled.discard(task.job_id)
                task.cancel.cancel()
        thread = threading.Thread(target=self.worker.run_task, args=(task,), daemon=True)
        thread.start()
        try:
            while True:
                kind, payload = outbox.get()
                yield kind, payload
                if kind in (DONE, FAILED):
                    break
        finally:
            task.cancel.cancel()  # a consumer that went away stops the engine too
            thread.join()
            with self._lock:
                self._tasks.pop(task.job_id, None)
            self._outbox = None
