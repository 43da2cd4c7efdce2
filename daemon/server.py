"""The daemon's socket side: one ROUTER socket and a poller loop that never blocks on work.

Clients (DEALER sockets) send requests; the loop validates them with shared.protocol,
answers at once, queues jobs and hands them to the workers. Workers report through a
thread-safe queue plus a one-byte wake-up on an inproc PUSH/PULL pair, so progress
reaches clients as soon as it exists while the loop stays the only thread that touches
sockets and job records.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
import time
import uuid
from typing import Any

import zmq

from impasto.daemon import jobs as jobmod
from impasto.daemon.jobs import Job, JobQueue
from impasto.daemon.worker import DONE, FAILED, PROGRESS, READY, STARTED, Worker
from impasto.shared import paths, protocol
from impasto.shared.errors import (
    BAD_OPTIONS,
    CANCELLED,
    INTERNAL,
    NOT_ALLOWED,
    UNKNOWN_JOB,
    ImpastoError,
)
from impasto.shared.options import DEFAULT_MAX_PIXELS, JobOptions, OptionsError

log = logging.getLogger("impasto.daemon.server")

HOUSEKEEPING_S = 1.0  # how often the loop expires old results when idle
HEADER_MARGIN = 64 * 1024
MAX_CLIENTS = 10_000  # hello records kept; the oldest go first


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("impasto")
    except Exception:
        return "0+unknown"


class Server:
    """Serve one endpoint until ``stop()`` (any thread) or a shutdown request."""

    def __init__(
        self,
        endpoint: str,
        devices: list[str] | tuple[str, ...] = ("auto",),
        max_pixels: int = DEFAULT_MAX_PIXELS,
        retention: float = jobmod.DEFAULT_RETENTION,
        curve: bool = False,
        warmup: bool = True,
    ):
        self.endpoint = endpoint
        self.max_pixels = max_pixels
        self.curve = curve
        self.instance = uuid.uuid4().hex
        self.started = time.time()
        self.queue = JobQueue(retention)
        self.clients: dict[bytes, tuple[str, str]] = {}  # identity -> (client_id, name)
        self._reports: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._ctx = zmq.Context()
        self._auth = None
        self._wake_addr = f"inproc://impasto-wake-{self.instance}"
        self._wake_local = threading.local()
        self.sock: zmq.Socket | None = None
        self.workers = [Worker(d, self._report, max_pixels, warmup) for d in devices]
        self.model_error: str | None = None

    # -- setup ----------------------------------------------------------------------------
    def bind(self) -> None:
        """Bind the ROUTER socket; raises ImpastoError naming the problem."""
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unroutable -> error, so we drop the peer
        # One frame may hold the largest image at 16 bit RGBA; anything bigger is refused
        # by libzmq before it is buffered (the peer is disconnected).
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_pixels * 8 + HEADER_MARGIN)
        # Per client: enough for a job's frames and losses; a client that stops reading
        # loses progress beyond this (it can attach later) instead of growing our memory.
        sock.setsockopt(zmq.SNDHWM, 1000)
        # ZMTP heartbeats drop dead TCP peers (and their queued frames) within ~15 s.
        sock.setsockopt(zmq.HEARTBEAT_IVL, 5000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15000)
        if self.curve:
            self._setup_curve(sock)
        try:
            sock.bind(self.endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise ImpastoError(
                f"cannot listen on {self.endpoint}: {exc.strerror}"
                + (" (another program uses this port?)" if exc.errno == zmq.EADDRINUSE else ""),
                INTERNAL,
            ) from None
        self.sock = sock
        self._wake = self._ctx.socket(zmq.PULL)
        self._wake.bind(self._wake_addr)
        log.info("listening on %s (CURVE %s)", self.endpoint, "on" if self.curve else "off")

    def _setup_curve(self, sock: zmq.Socket) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        from impasto.shared import keys

        public, secret = keys.server_keypair(create=True)
        allowed = paths.authorized_keys_dir()
        allowed.mkdir(parents=True, exist_ok=True)
        names = keys.authorized_keys()
        if not names:
            log.warning("CURVE is on but %s lists no client keys: nobody can connect", allowed)
        self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger("impasto.daemon.auth"))
        self._auth.start()
        self._auth.configure_curve_callback(domain="*", credentials_provider=_AuthorizedKeys())
        sock.curve_server = True
        sock.curve_publickey = public
        sock.curve_secretkey = secret
        log.info("CURVE server key %s; %d authorised client key(s)", public.decode(), len(names))

    # -- thread-safe entry points -------------------------------------------------------------
    def _report(self, kind: str, job: Job | None, payload: Any) -> None:
        """Called by worker threads: queue the report and wake the loop."""
        self._reports.put((kind, job, payload))
        self._poke()

    def _poke(self) -> None:
        # A full pipe means the loop is awake anyway; a closed context means it has ended.
        with contextlib.suppress(zmq.ZMQError):
            push = getattr(self._wake_local, "sock", None)
            if push is None:
                push = self._ctx.socket(zmq.PUSH)
                push.setsockopt(zmq.LINGER, 0)
                push.connect(self._wake_addr)
                self._wake_local.sock = push
            push.send(b"!", zmq.NOBLOCK)

    def stop(self) -> None:
        """Ask the loop to finish: running jobs are cancelled, queued ones fail."""
        self._stopping.set()

    # -- loop -----------------------------------------------------------------------------------
    def serve(self) -> None:
        if self.sock is None:
            self.bind()
        for worker in self.workers:
            worker.start()
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        last_housekeeping = time.monotonic()
        try:
            while not self._stopping.is_set():
                try:
                    ready = dict(poller.poll(HOUSEKEEPING_S * 1000))
                except zmq.ZMQError as exc:
                    if exc.errno == zmq.EINTR:
                        continue
                    raise
                if self._wake in ready:
                    self._drain_wake()
                self._drain_reports()
                if self.sock in ready:
                    for _ in range(100):  # bounded, so worker reports interleave
                        try:
                            frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._handle(frames)
                if time.monotonic() - last_housekeeping > HOUSEKEEPING_S:
                    last_housekeeping = time.monotonic()
                    for job in self.queue.expire():
                        log.info("job %s: result expired", job.id)
        finally:
            self._shutdown()

    def _drain_wake(self) -> None:
        while True:
            try:
                self._wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                return

    def _shutdown(self) -> None:
        log.info("shutting down")
        for job in self.queue.order():
            self.queue.remove(job)
            self._end_failed(job, CANCELLED, "the daemon is shutting down")
        for worker in self.workers:
            if worker.job is not None:
                worker.job.request_cancel()
            worker.stop()
        deadline = time.monotonic() + 15.0
        while any(w.job is not None for w in self.workers if w.is_alive()):
            if time.monotonic() > deadline:
                log.warning("a job did not stop within 15 s; exiting anyway")
                break
            try:
                kind, job, payload = self._reports.get(timeout=0.1)
            except queue.Empty:
                continue
            self._on_report(kind, job, payload)
        self._drain_reports()
        for worker in self.workers:
            worker.join(timeout=2.0)
        if self._auth is not None:
            self._auth.stop()
        # Closes every socket, the workers' wake-up sockets included; the linger lets
        # the final results go out.
        self._ctx.destroy(linger=500)
        log.info("stopped")

    # -- sending ---------------------------------------------------------------------------------
    def _send(self, identity: bytes, msg_type: str, fields: dict, images=()) -> bool:
        frames = protocol.encode(msg_type, fields, images)
        try:
            self.sock.send_multipart([identity, *frames], zmq.NOBLOCK, copy=False)
            return True
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:  # the client is gone
                self.clients.pop(identity, None)
                self.queue.forget_subscriber(identity)
            elif msg_type == protocol.PROGRESS:
                log.debug("dropped a progress message to a slow client: %s", exc)
            else:
                log.warning("dropped a %s message to a slow client: %s", msg_type, exc)
            return False

    def _broadcast(self, job: Job, msg_type: str, fields: dict, images=()) -> None:
        for identity in list(job.subscribers):
            self._send(identity, msg_type, fields, images)

    def _error(self, identity: bytes, exc: BaseException, req=None, job_id=None) -> None:
        self._send(identity, protocol.ERROR, protocol.error_fields(exc, req, job_id))

    # -- requests -------------------------------------------------------------------------------
    def _handle(self, frames: list) -> None:
        if len(frames) < 2:
            return  # no identity or no body: nothing to answer
        identity = frames[0].bytes
        try:
            msg = protocol.decode(frames[1:], protocol.REQUESTS, self.max_pixels)
        except protocol.ProtocolError as exc:
            log.info("refused a message: %s", exc)
            self._error(identity, exc, exc.req)
            return
        handler = getattr(self, f"_on_{msg.type}")
        try:
            handler(identity, msg, frames[1])
        except ImpastoError as exc:
            self._error(identity, exc, msg.req, msg.get("job_id"))
        except Exception as exc:  # a bug; answer it and keep serving
            log.exception("error handling %s", msg.type)
            self._error(identity, ImpastoError(f"daemon error: {exc}", INTERNAL), msg.req)

    def _on_hello(self, identity: bytes, msg: protocol.Message, _frame) -> None:
        if len(self.clients) >= MAX_CLIENTS:
            self.clients.pop(next(iter(self.clients)))
        self.clients[identity] = (msg["client_id"] or identity.hex(), msg["client"] or "client")
        self._send(
            identity,
            protocol.WELCOME,
            {
                "req": msg.req,
                "daemon": package_version(),
                "instance": self.instance,
                "pid": os.getpid(),
                "endpoint": self.endpoint,
            },
        )

    def _on_ping(self, identity: bytes, msg: protocol.Message, _frame) -> None:
        self._send(identity, protocol.PONG, {"req": msg.req, "instance": self.instance})

    def _on_submit(self, identity: bytes, msg: protocol.Message, _frame) -> None:
        if self._stopping.is_set():
            raise ImpastoError("the daemon is shutting down", NOT_ALLOWED)
        try:
            options = JobOptions.from_dict(msg["options"])
            options.blend_weights(msg["n_styles"])
        except OptionsError as exc:
            raise ImpastoError(str(exc), BAD_OPTIONS) from None
        except TypeError as exc:
            raise ImpastoError(f"bad options: {exc}", BAD_OPTIONS) from None
        n = msg["n_styles"]
        client_id, name = self.clients.get(identity, (identity.hex(), "client"))
        job = Job(
            id=self.queue.new_id(),
            client_id=client_id,
            client_name=name,
            options=options,
            content=msg.images[0],
            styles=msg.images[1 : 1 + n],
            init_image=msg.images[1 + n] if msg["has_init"] else None,
            frame_size=msg["frame_size"] or options.frame_size,
            frame_depth=msg["frame_depth"] or msg.images[0].depth,
        )
        job.subscribers.add(identity)
        position = self.queue.push(job)
        log.info("job %s: queued from %s at position %d", job.id, name, position)
        self._send(
            identity,
            protocol.ACCEPTED,
            {"req": msg.req, "job_id": job.id, "position": position, "state": job.state},
        )
        self._dispatch()

    def _on_cancel(self, identity: bytes, msg: protocol.Message, _frame) -> None:
        job = self._job(msg["job_id"])
        if job.state == protocol.QUEUED:
            self.queue.remove(job)
            self._end_failed(job, CANCELLED, "cancelled before it started")
        elif job.state == protocol.RUNNING:
            job.request_cancel()
        log.info("job %s: cancel requested (%s)", job.id, job.state)
        self._send(identity, protocol.OK, {"req": msg.req, "job_id": job.id})

    def _on_attach(self, identity: bytes, msg: protocol.Message, _frame) -> None:
        job = self._job(msg["job_id"])
        job.subscribers.add(identity)
        self._send(
            identity,
            protocol.ACCEPTED,
            {
                "req": msg.req,
                "job_id": job.id,
                "position": self.queue.position(job),
                "state": job.state,
            },
        )
        if job.progress is not None and not job.ended:
            self._send(identity, protocol.PROGRESS, job.progress, [job.frame] if job.frame else ())
        self._send_end(job, identity)

    def _on_status(self, identity: bytes, msg: protocol.Message, _frame) -> None:
        self._send(identity, protocol.STATUS_REPLY, {"req": msg.req, "info": self.status()})

    def _on_jobs(self, identity: bytes, msg: protocol.Message, _frame) -> None:
        positions = self.queue.positions()
        listing = [j.summary(positions.get(j.id, 0)) for j in self.queue.jobs.values()]
        self._send(identity, protocol.JOBS_REPLY, {"req": msg.req, "jobs": listing[-1000:]})

    def _on_shutdown(self, identity: bytes, msg: protocol.Message, frame) -> None:
        peer = ""
        try:
            peer = frame.get("Peer-Address") or ""
        except Exception:
            peer = ""
        local = (
            paths.is_loopback(self.endpoint)
            or peer in ("127.0.0.1", "::1", "")
            or (peer.startswith("127."))
        )
        if not local:
            raise ImpastoError(
                f"shutdown is only allowed from this machine, not {peer}", NOT_ALLOWED
            )
        log.info("shutdown requested by %s", self.clients.get(identity, ("", "a client"))[1])
        self._send(identity, protocol.OK, {"req": msg.req})
        self.stop()

    def _job(self, job_id: str) -> Job:
        job = self.queue.get(job_id)
        if job is None:
            raise ImpastoError(
                f"no job {job_id!r} (never submitted here, or its result expired)", UNKNOWN_JOB
            )
        return job

    def status(self) -> dict[str, Any]:
        running = [w.job.summary(0) for w in self.workers if w.job is not None]
        ended = [j for j in self.queue.jobs.values() if j.ended]
        return {
            "version": package_version(),
            "protocol": protocol.VERSION,
            "endpoint": self.endpoint,
            "pid": os.getpid(),
            "instance": self.instance,
            "uptime": time.time() - self.started,
            "devices": [w.resolved_device or w.device for w in self.workers],
            "model_loaded": any(w.model_loaded for w in self.workers),
            "engine_error": self.model_error,
            "curve": self.curve,
            "max_pixels": self.max_pixels,
            "retention": self.queue.retention,
            "queued": len(self.queue),
            "running": running,
            "finished": len(ended),
            "clients": len(self.clients),
            "memory": memory_info(),
        }

    # -- workers ---------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        for worker in self.workers:
            if worker.job is not None or not worker.is_alive():
                continue
            job = self.queue.pop()
            if job is None:
                return
            job.state = protocol.RUNNING
            job.started = time.time()
            job.device = worker.device
            worker.job = job
            worker.inbox.put(job)

    def _drain_reports(self) -> None:
        while True:
            try:
                kind, job, payload = self._reports.get_nowait()
            except queue.Empty:
                return
            self._on_report(kind, job, payload)

    def _on_report(self, kind: str, job: Job | None, payload: Any) -> None:
        if kind == READY:
            if payload["error"] is not None:
                self.model_error = str(payload["error"])
            return
        if kind == STARTED:
            log.info("job %s: running on %s", job.id, job.device)
            return
        if kind == PROGRESS:
            fields, frame = payload
            job.progress = fields
            if frame is not None:
                job.frame = frame
            self._broadcast(job, protocol.PROGRESS, fields, [frame] if frame else ())
            return
        self._release(job)
        if kind == DONE:
            fields, image = payload
            job.result, job.image, job.frame = fields, image, None
            job.device = fields.get("device") or job.device
            self.queue.finish(job, protocol.CANCELLED if fields["cancelled"] else protocol.DONE)
            log.info(
                "job %s: %s after %d iterations in %.1fs",
                job.id,
                job.state,
                fields["iterations"],
                fields["elapsed"],
            )
            self._send_end(job)
        elif kind == FAILED:
            code, message = payload
            self._end_failed(job, code, message)
        self._dispatch()

    def _release(self, job: Job) -> None:
        for worker in self.workers:
            if worker.job is job:
                worker.job = None
        job.token = None

    def _end_failed(self, job: Job, code: str, message: str) -> None:
        job.error = (code, message)
        self.queue.finish(job, protocol.CANCELLED if code == CANCELLED else protocol.FAILED_STATE)
        log.info("job %s: failed (%s) %s", job.id, code, message)
        self._send_end(job)

    def _send_end(self, job: Job, identity: bytes | None = None) -> None:
        """Send a finished job's Result or Failed to one subscriber or all of them."""
        targets = [identity] if identity is not None else list(job.subscribers)
        for target in targets:
            if job.result is not None and job.image is not None:
                self._send(target, protocol.RESULT, job.result, [job.image])
            elif job.error is not None:
                code, message = job.error
                self._send(
                    target, protocol.FAILED, {"job_id": job.id, "code": code, "message": message}
                )


class _AuthorizedKeys:
    """ZAP credentials check: the authorised_keys folder, re-read on each connection, so
    ``impasto keys --authorize`` takes effect without a restart; every decision logged."""

    def callback(self, domain: str, client_key: bytes) -> bool:
        from impasto.shared import keys

        key = client_key.decode("ascii", "replace")
        names = [n for n, k in keys.authorized_keys().items() if k == key]
        if names:
            log.info("CURVE: allowed client key %s (%s)", key, names[0])
            return True
        log.warning("CURVE: DENIED unknown client key %s", key)
        return False


def memory_info() -> dict[str, Any]:
    """Resident memory of the daemon, and CUDA memory if torch is loaded and has a GPU."""
    info: dict[str, Any] = {}
    try:
        with open("/proc/self/statm") as f:
            info["rss_mb"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource  # not on Windows; /proc is not on macOS

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        info["peak_rss_mb"] = peak / (2**20 if sys.platform == "darwin" else 2**10)
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                info["cuda_allocated_mb"] = torch.cuda.memory_allocated() / 2**20
                info["cuda_reserved_mb"] = torch.cuda.memory_reserved() / 2**20
        except Exception:
            pass
    return info
