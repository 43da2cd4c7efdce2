"""Job bookkeeping: uploads, the queue, ownership, the journal, the backend's reports.

The scheduler knows no sockets. Each entry point takes a request (or a backend report)
and returns the messages to send as ``Out`` records; the server only moves bytes. So
server.py imports this module and never the other way round.

Ownership: a job belongs to the proven identity (``Peer.owner``, from the transport's
ZAP User-Id) that submitted it. Other identities get ``unknown_job`` for it, exactly as
for an id that never existed; fairness between owners is by that identity too.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from impasto.daemon.backend import (
    CHECKPOINT,
    DONE,
    FRAME,
    PROGRESS,
    READY,
    STARTED,
    Backend,
    Task,
)
from impasto.daemon.engine.weightsource import WeightSource
from impasto.daemon.jobs import DEFAULT_RETENTION, Job, JobQueue, new_job_id
from impasto.daemon.journal import Journal
from impasto.daemon.limits import Limits
from impasto.shared import protocol
from impasto.shared.errors import (
    BAD_MESSAGE,
    CANCELLED,
    NOT_ALLOWED,
    UNKNOWN_JOB,
    ImpastoError,
)
from impasto.shared.options import JobOptions
from impasto.shared.sequence import SequenceOptions

log = logging.getLogger("impasto.daemon.scheduler")

REPLAY_BATCH = 4  # frames one replay sends per loop pass, so replays and requests interleave


@dataclass
class Out:
    """One message to send: to ``identity`` (a ROUTER routing id)."""

    identity: bytes
    type: str
    fields: dict[str, Any]
    images: list = field(default_factory=list)


@dataclass
class Peer:
    identity: bytes  # the connection's routing id (where replies go)
    owner: str  # the proven identity: "local", a CURVE key, or "anonymous"
    name: str = "client"


@dataclass
class Upload:
    """A submit whose images are arriving in chunks, straight into the journal."""

    job: Job
    peer: Peer
    req: int
    sizes: list[int]
    image: int = 0  # the next chunk's image and offset
    offset: int = 0
    credit: int = protocol.CREDIT
    last: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class Replay:
    """An attach to a sequence: its finished frames, read from disk one at a time and
    sent as the connection takes them; then it follows the job like any subscriber."""

    identity: bytes
    job_id: str
    next: int = 0  # the next frame to send


class Scheduler:
    def __init__(
        self,
        journal: Journal,
        backend: Backend,
        limits: Limits | None = None,
        retention: float = DEFAULT_RETENTION,
        weights: WeightSource | None = None,
    ):
        self.journal = journal
        self.backend = backend
        self.limits = limits or Limits()
        self.retention = retention
        self.weights = weights or WeightSource.for_daemon(None)
        self.jobs: dict[str, Job] = {}  # every job known: uploading to expiring
        self.queue = JobQueue()
        self.running: dict[str, Job] = {}
        self.finished: OrderedDict[str, Job] = OrderedDict()  # oldest first
        self.uploads: dict[str, Upload] = {}
        self.replays: list[Replay] = []
        self.stopping = False
        self.engine_error: str | None = None
        self._serial = journal.max_serial()

    # -- start-up -------------------------------------------------------------------------
    def recover(self) -> int:
        """Read the journal back after a restart: queued and running jobs queue again (a
        running one resumes from its checkpoint), results stay attachable."""
        resumed = 0
        for row in self.journal.rows():
            if row.state == "uploading":  # never accepted: nobody was told it exists
                self.journal.delete(row.id)
                continue
            meta = row.meta
            n_frames = meta.get("n_frames", 0)
            sequence = meta.get("sequence")
            job = Job(
                id=row.id,
                owner=row.owner,
                client_name=row.client,
                options=JobOptions.from_dict(row.options),
                n_styles=meta["n_styles"],
                has_init=meta["has_init"],
                frame_size=meta["frame_size"],
                frame_depth=meta["frame_depth"],
                depth=meta["depth"],
                nbytes=meta["nbytes"],
                created=row.created,
                n_frames=n_frames,
                sequence=SequenceOptions.from_dict(sequence) if sequence else None,
                frames_done=self.journal.frame_count(row.id) if n_frames else 0,
            )
            self.jobs[job.id] = job
            if row.state in (protocol.QUEUED, protocol.RUNNING):
                self.queue.push(job)
                resumed += 1
                continue
            job.state, job.finished = row.state, row.finished
            job.result, job.error = row.result, row.error
            self.finished[job.id] = job
        self.journal.sweep()
        if resumed:
            log.info("resumed %d job(s) from the journal %s", resumed, self.journal.path)
        return resumed

    # -- requests -------------------------------------------------------------------------
    def submit(self, peer: Peer, msg: protocol.Message) -> list[Out]:
        if self.stopping:
            raise ImpastoError("the daemon is shutting down", NOT_ALLOWED)
        n = msg["n_styles"]
        options = self.job_options(msg["options"], n)
        n_frames = msg["n_frames"] or 0
        sequence = None
        if n_frames:
            if not self.backend.runs_sequences:
                raise ImpastoError(
                    "sequence jobs do not run on a Ray cluster (this daemon runs with "
                    "--ray): start one without --ray to stylise animations",
                    NOT_ALLOWED,
                )
            sequence = SequenceOptions.from_dict(msg["sequence"] or {})
        sizes = [protocol.image_bytes(d) for d in msg["img"]]
        nbytes, what = sum(sizes), "its images"
        frame_depth = msg["frame_depth"] or msg["img"][0][3]
        if n_frames:
            # The finished frames stay on disk too: at most the content's size, RGBA.
            width, height = msg["img"][0][:2]
            nbytes += n_frames * protocol.image_bytes((width, height, 4, frame_depth))
            what = f"its {n_frames} frames of {width}x{height} and their results"
        mine = [u for u in self.uploads.values() if u.peer.owner == peer.owner]
        self.limits.check_uploads(len(mine), len(self.uploads))
        self.limits.check_submit(
            self.queue.count(peer.owner) + len(mine),
            len(self.queue) + len(self.uploads),
            nbytes,
            self.queue.bytes_of(peer.owner) + sum(u.job.nbytes for u in mine),
            self.queue.total_bytes + sum(u.job.nbytes for u in self.uploads.values()),
            what,
        )
        self._serial += 1
        content_depth = msg["img"][0][3]
        job = Job(
            id=new_job_id(self._serial),
            owner=peer.owner,
            client_name=peer.name,
            options=options,
            n_styles=n,
            has_init=bool(msg["has_init"]),
            frame_size=msg["frame_size"] or options.frame_size,
            frame_depth=frame_depth,
            depth=content_depth,
            nbytes=nbytes,
            state="uploading",
            n_frames=n_frames,
            sequence=sequence,
        )
        meta = {
            "n_styles": job.n_styles,
            "has_init": job.has_init,
            "frame_size": job.frame_size,
            "frame_depth": job.frame_depth,
            "depth": job.depth,
            "nbytes": job.nbytes,
            "n_frames": n_frames,
            "sequence": sequence.to_dict() if sequence else None,
        }
        self.journal.begin_upload(
            job.id, self._serial, job.owner, job.client_name, options.to_dict(), meta, msg["img"]
        )
        self.uploads[job.id] = Upload(job, peer, msg.req or 0, sizes)
        fields = {
            "req": msg.req,
            "upload_id": job.id,
            "chunk": protocol.CHUNK_BYTES,
            "credit": protocol.CREDIT,
        }
        return [Out(peer.identity, protocol.UPLOAD, fields)]

    def job_options(self, values: dict, n_styles: int) -> JobOptions:
        """A request's options, checked once: every value, the blend weights against
        the number of styles, and a weights name this daemon offers (else the one refusal)."""
        options = JobOptions.from_dict(values)
        options.blend_weights(n_styles)
        self.weights.resolve(options.weights)
        return options

    def chunk(self, peer: Peer, msg: protocol.Message) -> list[Out]:
        upload = self.uploads.get(msg["upload_id"])
        if upload is None or upload.peer.owner != peer.owner:
            raise ImpastoError(
                f"no upload {msg['upload_id']!r} in progress (an upload silent for "
                f"{self.limits.upload_idle_s:g}s is dropped)",
                BAD_MESSAGE,
            )
        data = msg["data"]
        want = min(protocol.CHUNK_BYTES, upload.sizes[upload.image] - upload.offset)
        problem = None
        if (msg["image"], msg["offset"]) != (upload.image, upload.offset):
            problem = (
                f"expected image {upload.image} at offset {upload.offset}, "
                f"got image {msg['image']} at offset {msg['offset']}"
            )
        elif len(data) != want:
            problem = f"chunk of {len(data)} bytes, expected {want}"
        elif upload.credit <= 0:
            problem = "chunk sent beyond the credit the daemon gave"
        if problem:
            self._drop_upload(upload)
            raise ImpastoError(f"upload {upload.job.id}: {problem}; upload dropped", BAD_MESSAGE)
        self.journal.write_chunk(upload.job.id, upload.image, upload.offset, memoryview(data))
        upload.last = time.monotonic()
        upload.offset += len(data)
        if upload.offset == upload.sizes[upload.image]:
            upload.image, upload.offset = upload.image + 1, 0
        if upload.image < len(upload.sizes):
            fields = {"req": upload.req, "upload_id": upload.job.id, "credit": 1}
            return [Out(peer.identity, protocol.CREDIT_MSG, fields)]
        return self._accept(upload)

    def _accept(self, upload: Upload) -> list[Out]:
        """Every byte is in the journal: commit the job as queued, then say ``accepted``."""
        del self.uploads[upload.job.id]
        job = upload.job
        job.state = protocol.QUEUED
        self.journal.commit_inputs(job.id)
        job.subscribers.add(upload.peer.identity)
        self.jobs[job.id] = job
        position = self.queue.push(job)
        log.info("job %s: queued from %s at position %d", job.id, job.client_name, position)
        fields = {"req": upload.req, "job_id": job.id, "position": position, "state": job.state}
        return [Out(upload.peer.identity, protocol.ACCEPTED, fields), *self.dispatch()]

    def _drop_upload(self, upload: Upload) -> None:
        self.uploads.pop(upload.job.id, None)
        self.journal.delete(upload.job.id)

    def cancel(self, peer: Peer, msg: protocol.Message) -> list[Out]:
        upload = self.uploads.get(msg["job_id"])
        if upload is not None and upload.peer.owner == peer.owner:
            self._drop_upload(upload)
            return [Out(peer.identity, protocol.OK, {"req": msg.req, "job_id": msg["job_id"]})]
        job = self.owned(peer, msg["job_id"])
        out = [Out(peer.identity, protocol.OK, {"req": msg.req, "job_id": job.id})]
        if job.state == protocol.QUEUED and self.queue.remove(job):
            out += self._fail(job, CANCELLED, "cancelled before it started")
        elif job.state == protocol.RUNNING:
            job.cancel.cancel()
            self.backend.cancel(job.id)
        log.info("job %s: cancel requested (%s)", job.id, job.state)
        return out

    def attach(self, peer: Peer, msg: protocol.Message) -> list[Out]:
        job = self.owned(peer, msg["job_id"])
        position = self.queue.positions().get(job.id, 0) if job.state == protocol.QUEUED else 0
        fields = {"req": msg.req, "job_id": job.id, "position": position, "state": job.state}
        out = [Out(peer.identity, protocol.ACCEPTED, fields)]
        if job.frames_done:  # the finished frames first, then the job live (pump_replays)
            job.subscribers.discard(peer.identity)
            self.replays = [
                r for r in self.replays if r.identity != peer.identity or r.job_id != job.id
            ]
            self.replays.append(Replay(peer.identity, job.id))
            return out
        return out + self._follow(job, peer.identity)

    def _follow(self, job: Job, identity: bytes) -> list[Out]:
        """Subscribe ``identity`` to the job: its latest progress, or how it ended."""
        job.subscribers.add(identity)
        out = []
        if job.progress is not None and not job.ended:
            frames = [job.frame] if job.frame is not None else []
            out.append(Out(identity, protocol.PROGRESS, job.progress, frames))
        return out + self._end_messages(job, [identity])

    def pump_replays(self, send: Callable[[Out], bool]) -> None:
        """Send each replay's next frames (at most REPLAY_BATCH), each read from disk when
        its turn comes; a send the connection cannot take now (``send`` returns False) is
        tried again on the next pass. A replay that reaches the job's last finished frame
        ends by subscribing its connection, on this thread, so no frame slips between."""
        for replay in list(self.replays):
            for _ in range(REPLAY_BATCH):
                job = self.jobs.get(replay.job_id)
                if job is None or replay not in self.replays:
                    self._end_replay(replay)
                    break
                if replay.next >= job.frames_done:
                    self._end_replay(replay)
                    for out in self._follow(job, replay.identity):
                        send(out)
                    break
                fields, image = self.journal.frame(job.id, replay.next)
                if not send(Out(replay.identity, protocol.FRAME, fields, [image])):
                    break
                replay.next += 1

    def _end_replay(self, replay: Replay) -> None:
        if replay in self.replays:
            self.replays.remove(replay)

    def list_jobs(self, peer: Peer, msg: protocol.Message) -> list[Out]:
        positions = self.queue.positions()
        mine = [j for j in self.jobs.values() if j.owner == peer.owner and j.state != "uploading"]
        listing = [j.summary(positions.get(j.id, 0)) for j in mine][-1000:]
        return [Out(peer.identity, protocol.JOBS_REPLY, {"req": msg.req, "jobs": listing})]

    def owned(self, peer: Peer, job_id: str) -> Job:
        """The peer's own job; anyone else's reads exactly like an unknown id."""
        job = self.jobs.get(job_id)
        if job is None or job.owner != peer.owner or job.state == "uploading":
            raise ImpastoError(
                f"no job {job_id!r} (never submitted by you here, or its result expired)",
                UNKNOWN_JOB,
            )
        return job

    def forget_subscriber(self, identity: bytes) -> None:
        for job in self.jobs.values():
            job.subscribers.discard(identity)
        self.replays = [r for r in self.replays if r.identity != identity]

    # -- running --------------------------------------------------------------------------
    def dispatch(self) -> list[Out]:
        out: list[Out] = []
        while not self.stopping and self.backend.free_slots() > 0:
            job = self.queue.pop()
            if job is None:
                break
            if job.n_frames:
                self._start(job, self._sequence_task(job))
                continue
            inputs = self.journal.images(job.id, "input")
            n = job.n_styles
            task = Task(
                job.id,
                job.options,
                inputs[0],
                inputs[1 : 1 + n],
                inputs[1 + n] if job.has_init else None,
                job.frame_size,
                job.frame_depth,
                cancel=job.cancel,
            )
            saved = self.journal.checkpoint(job.id)
            if saved is not None:
                task.start_iteration, task.init_image = saved
                log.info("job %s: resuming from its checkpoint at iteration %d", job.id, saved[0])
            self._start(job, task)
        return out

    def _start(self, job: Job, task: Task) -> None:
        job.state, job.started = protocol.RUNNING, time.time()
        self.journal.set_state(job.id, protocol.RUNNING)
        job.device = self.backend.submit(task)
        self.running[job.id] = job

    def _sequence_task(self, job: Job) -> Task:
        """Frames are read one at a time by the worker; a resumed sequence starts after
        its last finished frame, warm-started from that frame as stored."""
        inputs = self.journal.input_files(job.id)
        frames = inputs[: job.n_frames]
        done = job.frames_done
        previous = self.journal.frame(job.id, done - 1)[1] if done else None
        if done:
            log.info("job %s: resuming after frame %d of %d", job.id, done, job.n_frames)
        return Task(
            job.id,
            job.options,
            frames[0],
            list(inputs[job.n_frames :]),
            None,
            job.frame_size,
            job.frame_depth,
            cancel=job.cancel,
            sequence=job.sequence,
            frames=frames,
            start_frame=done,
            previous=previous,
        )

    def on_report(self, kind: str, job_id: str | None, payload: Any) -> list[Out]:
        if kind == READY:
            if payload["error"] is not None:
                self.engine_error = str(payload["error"])
            return self.dispatch()
        job = self.running.get(job_id or "")
        if job is None:
            return []
        if kind == STARTED:
            log.info("job %s: running on %s", job.id, job.device)
            return []
        if kind == PROGRESS:
            fields, frame = payload
            job.progress = fields
            if frame is not None:
                job.frame = frame
            images = [frame] if frame is not None else []
            return [Out(i, protocol.PROGRESS, fields, images) for i in job.subscribers]
        if kind == CHECKPOINT:
            iteration, image = payload
            self.journal.save_checkpoint(job.id, iteration, image)
            return []
        if kind == FRAME:  # stored before it is sent: a restart never recomputes it
            fields, image = payload
            self.journal.save_frame(job.id, fields["index"], fields, image)
            job.frames_done = fields["index"] + 1
            return [Out(i, protocol.FRAME, fields, [image]) for i in job.subscribers]
        del self.running[job.id]
        self.backend.finished(job.id)
        if self.stopping:  # interrupted by shutdown: stays journalled, resumes on restart
            log.info("job %s: interrupted by shutdown; it resumes when the daemon restarts", job.id)
            return []
        if kind == DONE and job.n_frames and not job.frames_done:
            out = self._fail(job, CANCELLED, "cancelled before its first frame finished")
        elif kind == DONE:
            fields, image = payload
            if job.n_frames:  # the result is the last finished frame, of any run
                fields["frames"] = job.frames_done
                fields["cancelled"] = job.frames_done < job.n_frames
                if image is None:
                    image = self.journal.frame(job.id, job.frames_done - 1)[1]
            state = protocol.CANCELLED if fields["cancelled"] else protocol.DONE
            self.journal.save_result(job.id, state, fields, image)
            job.result, job.device = fields, fields.get("device") or job.device
            self._finish(job, state)
            log.info(
                "job %s: %s after %d iterations in %.1fs",
                job.id,
                job.state,
                fields["iterations"],
                fields["elapsed"],
            )
            out = [Out(i, protocol.RESULT, fields, [image]) for i in job.subscribers]
        else:
            code, message = payload
            out = self._fail(job, code, message)
        return out + self.dispatch()

    def _finish(self, job: Job, state: str) -> None:
        job.state, job.finished = state, time.time()
        job.frame = None
        self.finished[job.id] = job
        while len(self.finished) > self.limits.finished_kept:
            self._forget(next(iter(self.finished)))

    def _fail(self, job: Job, code: str, message: str) -> list[Out]:
        job.error = (code, message)
        job.frames_done = 0  # the journal forgets a failed sequence's frames
        state = protocol.CANCELLED if code == CANCELLED else protocol.FAILED_STATE
        self.journal.save_failure(job.id, state, code, message)
        self._finish(job, state)
        log.info("job %s: failed (%s) %s", job.id, code, message)
        return self._end_messages(job, list(job.subscribers))

    def _end_messages(self, job: Job, targets: list[bytes]) -> list[Out]:
        """A finished job's Result (image read back from the journal) or Failed."""
        if not job.ended or not targets:
            return []
        if job.result is not None:
            images = self.journal.images(job.id, "result")
            if images:
                return [Out(t, protocol.RESULT, job.result, images) for t in targets]
        code, message = job.error or (UNKNOWN_JOB, "the result is gone")
        fields = {"job_id": job.id, "code": code, "message": message}
        return [Out(t, protocol.FAILED, fields) for t in targets]

    # -- housekeeping ---------------------------------------------------------------------
    def housekeeping(self) -> None:
        """Forget results past their retention, drop uploads that went silent."""
        now = time.time()
        while self.finished:
            job = next(iter(self.finished.values()))
            if job.finished is None or now - job.finished <= self.retention:
                break
            log.info("job %s: result expired", job.id)
            self._forget(job.id)
        idle = time.monotonic() - self.limits.upload_idle_s
        for upload in [u for u in self.uploads.values() if u.last < idle]:
            log.info("upload %s: silent for %gs, dropped", upload.job.id, self.limits.upload_idle_s)
            self._drop_upload(upload)

    def _forget(self, job_id: str) -> None:
        self.finished.pop(job_id, None)
        self.jobs.pop(job_id, None)
        self.journal.delete(job_id)

    def shutdown(self) -> None:
        """Stop starting jobs; queued ones stay in the journal for the next start."""
        self.stopping = True
        for job in self.running.values():
            job.cancel.cancel()
        for upload in list(self.uploads.values()):
            self._drop_upload(upload)

    def counts(self) -> dict[str, Any]:
        return {
            "queued": len(self.queue),
            "queued_mb": round(self.queue.total_bytes / 2**20, 1),
            "uploads": len(self.uploads),
            "running": len(self.running),  # counts only: whose jobs they are is private
            "finished": len(self.finished),
            "retention": self.retention,
            "weights": self.weights.names(),
        }
