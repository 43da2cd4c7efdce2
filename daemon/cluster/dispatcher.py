"""RayBackend: the scheduler's tasks run on a pool of Ray actors, one per GPU (or CPU slot).

It implements ``Backend`` (backend.py): the scheduler keeps its queue, fairness, journal
and sockets; this backend gives each task to an idle actor (preferring one that holds the
task's style targets), and a thread per running task reads the actor's streaming
generator and hands every report to the scheduler as it arrives. A task whose actor dies
runs again on another actor from its latest checkpoint (a CHECKPOINT report, or a
progress frame if that is newer) when there is one. Every slot field is guarded by one
lock: the scheduler's thread and the stream threads share it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ObjectLostError, RayActorError

from impasto.daemon.backend import CHECKPOINT, DONE, FAILED, PROGRESS, READY, STARTED, Report, Task
from impasto.shared.errors import CANCELLED, INTERNAL, TIMEOUT, ImpastoError
from impasto.shared.options import DEFAULT_MAX_PIXELS, JobOptions
from impasto.shared.rawimage import RawImage

from . import placement
from .actor import EngineActor, task_spec
from .localhead import LocalHead, start_head
from .placement import DEAD, RESTARTING, ActorSlot, choose, style_keys

log = logging.getLogger("impasto.daemon.cluster")

NAMESPACE = "impasto"
ACTOR_RESTARTS = 3  # Ray restarts a crashed actor (OOM kill, node lost) this many times
JOB_ATTEMPTS = 3  # a job whose actor dies runs again elsewhere, at most this many times
READY_TIMEOUT_S = 600.0  # loading VGG19 on a cold node, or a restart, can take minutes
ESTIMATE_TIMEOUT_S = 30.0  # an actor plans a job in milliseconds; a new model in seconds

Checkpoint = tuple[int, RawImage]  # (iteration, image), as in a CHECKPOINT report


class RayBackend:
    """Tasks on Ray actors; ``address`` is a cluster's address, or "auto" (a private one)."""

    # A sequence's frames are read one at a time from the daemon's disk, which an actor
    # on another node cannot see: sequence jobs are refused at submit with --ray.
    runs_sequences = False

    def __init__(
        self,
        address: str,
        actors: int | None = None,
        cpus_per_actor: float = 1.0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        warmup: bool = True,
        name: str = "impasto",
        weights_dir: Path | None = None,
    ):
        self.address = address
        self.n_actors = actors
        self.cpus_per_actor = cpus_per_actor
        self.max_pixels = max_pixels
        self.warmup = warmup
        self.weights_dir = weights_dir
        self.name = name
        self.slots: list[ActorSlot] = []
        self.backlog: list[Task] = []  # retries waiting for an actor (from a checkpoint)
        self.attempts: dict[str, int] = {}
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._report: Report = lambda *_: None
        self._head: LocalHead | None = None  # a private head of --ray auto, ours to stop
        self._broken: str | None = None  # why no job can run (no cluster, no actor left)

    # -- setup -------------------------------------------------------------------------------
    def start(self, report: Report) -> None:
        """Connect and create the actors in the background: the loop answers meanwhile."""
        self._report = report
        self._spawn(self._boot)

    def _boot(self) -> None:
        try:
            self._head = connect(self.address)
            resources = ray.cluster_resources()
        except Exception as exc:
            why = f"cannot join the Ray cluster at {self.address}: {exc}".splitlines()[0]
            log.error("%s", why)
            with self._lock:
                self._broken = why
            self._report(READY, None, {"device": "ray", "error": ImpastoError(why, INTERNAL)})
            return
        gpus = int(resources.get("GPU", 0))
        cpus = resources.get("CPU", 1)
        count = self.n_actors or gpus or max(1, int(cpus // self.cpus_per_actor))
        needs = {"num_gpus": 1} if gpus else {"num_cpus": self.cpus_per_actor}
        device = "cuda" if gpus else "cpu"
        log.info("Ray at %s: %d GPU(s), %s CPU(s); %d actor(s)", self.address, gpus, cpus, count)
        for i in range(count):
            name = f"{self.name}-{i}"
            handle = EngineActor.options(
                name=name,
                namespace=NAMESPACE,
                max_restarts=ACTOR_RESTARTS,
                max_task_retries=0,  # the dispatcher retries, from the task's checkpoint
                **needs,
            ).remote(device, self.max_pixels, self.warmup, self.weights_dir)
            slot = ActorSlot(name=name, handle=handle, device=device)
            with self._lock:
                self.slots.append(slot)
            self._spawn(self._await_ready, slot)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _await_ready(self, slot: ActorSlot) -> None:
        """Wait for the actor's engine (first start or a restart), then offer the slot."""
        try:
            info: dict[str, Any] = ray.get(slot.handle.ready.remote(), timeout=READY_TIMEOUT_S)
        except Exception as exc:
            with self._lock:
                slot.state, slot.error = DEAD, f"{type(exc).__name__}: {exc}".splitlines()[0]
            log.error("actor %s is gone: %s", slot.name, slot.error)
            self._report(READY, None, {"device": slot.name, "error": None})
            return
        with self._lock:
            slot.device, slot.node, slot.error = info["device"], info["node"], info["error"]
            slot.state = placement.READY if info["error"] is None else DEAD
            self._take_backlog(slot)
        log.info("actor %s ready on %s (%s)", slot.name, slot.node, slot.device)
        error = None if info["error"] is None else ImpastoError(info["error"], INTERNAL)
        self._report(READY, None, {"device": slot.device, "error": error})

    # -- the Backend protocol ----------------------------------------------------------------
    def free_slots(self) -> int:
        with self._lock:
            if self._stopping:
                return 0
            if self._unusable():
                return 1  # so the scheduler hands queued tasks over and submit() fails them
            return sum(s.idle for s in self.slots)

    def _unusable(self) -> str | None:
        """Why no task can run here (lock held), or None."""
        if self._broken is None and self.slots and all(s.state == DEAD for s in self.slots):
            return "every Ray actor of this daemon is gone; see `impasto daemon status`"
        return self._broken

    def submit(self, task: Task) -> str:
        with self._lock:
            why = self._unusable()
            if why is None:
                return self._place(task)
        self._report(FAILED, task.job_id, (INTERNAL, why))
        return "ray"

    def cancel(self, job_id: str) -> None:
        with self._lock:
            slot = next((s for s in self.slots if s.job and s.job.job_id == job_id), None)
        if slot is not None:
            with contextlib.suppress(RayActorError):  # its stream thread retries or fails it
                slot.handle.cancel.remote(job_id)
        else:
            self._drop_waiting(job_id, "cancelled while waiting for an actor")

    def finished(self, job_id: str) -> None:
        with self._lock:
            self.attempts.pop(job_id, None)
            for slot in self.slots:
                if slot.job is not None and slot.job.job_id == job_id:
                    slot.job, slot.started = None, False
                    slot.done += 1
                    self._take_backlog(slot)

    def estimate(self, options: JobOptions, height: int, width: int, n_styles: int) -> dict:
        """Asks a ready actor (an idle one first) for its plan of such a job: the
        speed that actor measured, its device's budget. Blocks: call it off the loop."""
        with self._lock:
            why = self._unusable()
            ready = [s for s in self.slots if s.state == placement.READY]
            slot = next((s for s in ready if s.job is None), ready[0] if ready else None)
        if why is not None:
            raise ImpastoError(why, INTERNAL)
        if slot is None:
            raise ImpastoError("no Ray actor is ready yet; try again in a moment", TIMEOUT)
        try:
            ref = slot.handle.estimate.remote(options, height, width, n_styles)
            code, answer = ray.get(ref, timeout=ESTIMATE_TIMEOUT_S)
        except Exception as exc:  # the actor died or did not answer in time
            why = f"Ray actor {slot.name} gave no estimate: {exc}".splitlines()[0]
            raise ImpastoError(why, TIMEOUT) from None
        if code != "ok":
            raise ImpastoError(answer, code)
        return {**answer, "device": f"{slot.name}: {answer.get('device', '')}"}

    def busy(self) -> bool:
        with self._lock:
            return bool(self.backlog) or any(s.job is not None for s in self.slots)

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {
                "devices": [f"{s.name} {s.node}: {s.device}".strip() for s in self.slots],
                "model_loaded": any(s.state == placement.READY for s in self.slots),
                "engine_error": self._unusable(),
                "cluster": {
                    "address": self.address,
                    "actors": [s.summary() for s in self.slots],
                    "retrying": [t.job_id for t in self.backlog],
                },
            }

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            waiting = [t.job_id for t in self.backlog]
            running = [s.job.job_id for s in self.slots if s.job is not None]
        for job_id in waiting:
            self._drop_waiting(job_id, "the daemon is shutting down")
        for job_id in running:
            self.cancel(job_id)

    def _drop_waiting(self, job_id: str, why: str) -> None:
        """End a task waiting in the backlog (cancel, shutdown); no-op once it runs."""
        with self._lock:
            waiting = [t for t in self.backlog if t.job_id == job_id]
            for task in waiting:
                self.backlog.remove(task)
        if waiting:
            self._report(FAILED, job_id, (CANCELLED, why))

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        for slot in self.slots:
            with contextlib.suppress(Exception):  # already dead
                ray.kill(slot.handle)
        log.info("leaving the Ray cluster")
        ray.shutdown()
        if self._head is not None:
            log.info("stopping the private Ray head")
            self._head.stop()

    # -- running a task ----------------------------------------------------------------------
    def _place(self, task: Task) -> str:
        """Launch ``task`` (lock held) on the best idle actor, or keep it for the next one;
        returns where it runs (or "ray" while it waits)."""
        slot = choose(self.slots, style_keys(task))
        if slot is not None:
            self._launch(slot, task)
            return slot.name
        if task.cancel.cancelled:
            self._report(FAILED, task.job_id, (CANCELLED, "cancelled while waiting for an actor"))
        else:  # after an actor died; or a submit racing one (the scheduler checks free_slots)
            self.backlog.append(task)
        return "ray"

    def _launch(self, slot: ActorSlot, task: Task) -> None:
        """Start ``task`` on ``slot`` (lock held)."""
        slot.job, slot.started = task, False
        slot.remember(style_keys(task))
        stream = slot.handle.run.remote(task_spec(task))
        if task.cancel.cancelled:
            with contextlib.suppress(RayActorError):
                slot.handle.cancel.remote(task.job_id)
        self._spawn(self._stream, slot, task, stream)

    def _take_backlog(self, slot: ActorSlot) -> None:
        """Give ``slot`` (lock held) the oldest task whose actor died, if any."""
        while slot.idle and self.backlog and not self._stopping:
            self._launch(slot, self.backlog.pop(0))

    def _stream(self, slot: ActorSlot, task: Task, stream) -> None:
        """Hand the actor's reports to the scheduler as they arrive; retry if it dies."""
        checkpoint: Checkpoint | None = None
        try:
            for ref in stream:
                kind, payload = ray.get(ref)
                if kind == STARTED:
                    with self._lock:
                        slot.started = True
                elif kind == CHECKPOINT:
                    checkpoint = payload
                elif kind == PROGRESS and payload[1] is not None:
                    checkpoint = (int(payload[0]["iteration"]), payload[1])
                self._report(kind, task.job_id, payload)
                if kind in (DONE, FAILED):
                    return
            why = f"actor {slot.name} ended the job without a result"
            self._report(FAILED, task.job_id, (INTERNAL, why))
        except (RayActorError, ObjectLostError) as exc:  # the actor or its node is gone
            self._actor_lost(slot, task, checkpoint, exc)
        except Exception as exc:
            log.exception("job %s: stream from %s failed", task.job_id, slot.name)
            why = f"cluster error: {type(exc).__name__}: {exc}"
            self._report(FAILED, task.job_id, (INTERNAL, why))

    def _actor_lost(
        self, slot: ActorSlot, task: Task, checkpoint: Checkpoint | None, exc: Exception
    ) -> None:
        dead = isinstance(exc, ActorDiedError)
        if checkpoint is not None:  # carry on from the best image so far
            iteration, image = checkpoint
            task = dataclasses.replace(task, init_image=image, start_iteration=iteration)
        with self._lock:
            if slot.job is not None and slot.job.job_id == task.job_id:
                slot.job, slot.started = None, False
            slot.state = RESTARTING
            attempt = self.attempts.get(task.job_id, 1)
            self.attempts[task.job_id] = attempt + 1
            retry = attempt < JOB_ATTEMPTS and not self._stopping
            if retry:
                self._place(task)
        log.warning(
            "job %s: actor %s %s (%s); %s",
            task.job_id,
            slot.name,
            "died" if dead else "is unavailable",
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            f"retrying (attempt {attempt + 1}, from "
            f"{'the latest frame' if checkpoint is not None else 'the start'})"
            if retry
            else "giving up",
        )
        if not retry:
            why = f"the job's actor died {attempt} time(s); last: {type(exc).__name__}"
            self._report(FAILED, task.job_id, (INTERNAL, why))
        self._spawn(self._await_ready, slot)  # a restarted actor rejoins the pool


def connect(address: str) -> LocalHead | None:
    """Join the cluster at ``address``; for "auto" start a private head on this machine
    first (returned: the caller stops it).

    "auto" never probes for a running cluster with ``ray.init(address="auto")``: a failed
    probe left the process aborting on SIGTERM (exit -6 instead of a clean shutdown).
    """
    kwargs = {"namespace": NAMESPACE, "log_to_driver": False, "logging_level": logging.WARNING}
    if address != "auto":
        ray.init(address=address, **kwargs)
        return None
    head = start_head()
    try:
        ray.init(address=head.address, **kwargs)
    except BaseException:
        head.stop()
        raise
    log.info("private Ray head at %s (temp dir %s)", head.address, head.temp_dir)
    return head
