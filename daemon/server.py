"""The daemon's socket side: one ROUTER socket and a poller loop that never blocks on work.

Clients (DEALER sockets) send requests; the loop validates them with shared.protocol,
learns who sent each one from the transport (the ZAP User-Id, see auth.py), lets the
scheduler decide, and sends what it returns. Backends report through a thread-safe
queue plus a one-byte wake-up on an inproc PUSH/PULL pair, so progress reaches clients
as soon as it exists while the loop stays the only thread that touches sockets, job
records and the journal.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import zmq

from impasto.daemon.auth import ANONYMOUS, ZapHandler
from impasto.daemon.backend import Backend
from impasto.daemon.engine.weightsource import WeightSource
from impasto.daemon.estimates import Estimator
from impasto.daemon.jobs import DEFAULT_RETENTION
from impasto.daemon.journal import Journal
from impasto.daemon.limits import Limits, RateLimitedLog
from impasto.daemon.scheduler import Out, Peer, Scheduler
from impasto.daemon.worker import ThreadBackend
from impasto.shared import keys, paths, protocol
from impasto.shared.errors import INTERNAL, NOT_ALLOWED, ImpastoError
from impasto.shared.options import DEFAULT_MAX_PIXELS

log = logging.getLogger("impasto.daemon.server")

HOUSEKEEPING_S = 1.0  # how often the loop expires old results and idle uploads
REPLAY_POLL_S = 0.01  # while an attach replays frames, the loop wakes this often
STOP_WAIT_S = 5.0  # a running job gets this long to stop at shutdown (it resumes later)
MAX_NAMES = 10_000  # client names from hello kept for listings; the oldest go first


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
        retention: float = DEFAULT_RETENTION,
        curve: bool = False,
        warmup: bool = True,
        limits: Limits | None = None,
        weights_dir: Path | None = None,
        journal_path: Path | None = None,
        backend: Backend | None = None,
    ):
        self.endpoint = endpoint
        self.max_pixels = max_pixels
        self.curve = curve
        self.instance = uuid.uuid4().hex
        self.started = time.time()
        self.names: dict[bytes, str] = {}  # routing id -> the name from hello (display only)
        self._reports: queue.Queue = queue.Queue()
        self._replies: queue.Queue[Out] = queue.Queue()  # from other threads, to send
        self._stopping = threading.Event()
        self._ctx = zmq.Context()
        self._zap: ZapHandler | None = None
        self._wake_addr = f"inproc://impasto-wake-{self.instance}"
        self._wake_local = threading.local()
        self._refusals = RateLimitedLog(log)
        self._closing = False  # set before the context goes: workers stop poking it
        self.sock: zmq.Socket | None = None
        weights_dir = weights_dir if weights_dir is not None else paths.weights_dir()
        self.backend: Backend = backend or ThreadBackend(devices, max_pixels, warmup, weights_dir)
        self.journal = Journal(journal_path or paths.journal_file(endpoint))
        self.scheduler = Scheduler(
            self.journal,
            self.backend,
            limits,
            retention,
            WeightSource.for_daemon(weights_dir),
        )
        self.estimator = Estimator(self.backend, self._reply_later)

    # -- setup ----------------------------------------------------------------------------
    def bind(self) -> None:
        """Bind the ROUTER socket; raises ImpastoError naming the problem."""
        loopback = paths.is_loopback(self.endpoint)
        if self.curve or loopback:  # before the bind, so no connection skips the check
            token = None if self.curve else keys.local_token(create=True)
            self._zap = ZapHandler(self._ctx, token, self.curve)
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unroutable -> error, so we drop the peer
        # Nothing larger than one upload chunk plus its header is ever buffered: libzmq
        # drops a bigger message (and its connection) before allocating it. Clients learn
        # the limit from the welcome and never send more.
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        # Per client: a few messages; a hostile sender ignoring its credit stalls in TCP.
        sock.setsockopt(zmq.RCVHWM, 2 * protocol.CREDIT)
        # Per client: enough for a job's frames and losses; a client that stops reading
        # loses progress beyond this (it can attach later) instead of growing our memory.
        sock.setsockopt(zmq.SNDHWM, 1000)
        # ZMTP heartbeats drop dead TCP peers (and their queued frames) within ~15 s.
        sock.setsockopt(zmq.HEARTBEAT_IVL, 5000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15000)
        if self.curve:
            public, secret = keys.server_keypair(create=True)
            allowed = paths.authorized_keys_dir()
            allowed.mkdir(parents=True, exist_ok=True)
            names = keys.authorized_keys()
            if not names:
                log.warning("CURVE is on but %s lists no client keys: nobody can connect", allowed)
            sock.curve_server = True
            sock.curve_publickey = public
            sock.curve_secretkey = secret
            log.info(
                "CURVE server key %s; %d authorised client key(s)", public.decode(), len(names)
            )
        elif loopback:
            sock.plain_server = True  # the local token is the password (auth.py)
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

    # -- thread-safe entry points -------------------------------------------------------------
    def _report(self, kind: str, job_id: str | None, payload: Any) -> None:
        """Called by backend threads: queue the report and wake the loop."""
        self._reports.put((kind, job_id, payload))
        self._poke()

    def _reply_later(self, out: Out) -> None:
        """Called by other threads (the estimator): queue a reply and wake the loop."""
        self._replies.put(out)
        self._poke()

    def _poke(self) -> None:
        # A full pipe means the loop is awake anyway; a closed context means it has ended.
        if self._ctx.closed or self._closing:
            return
        with contextlib.suppress(zmq.ZMQError):
            push = getattr(self._wake_local, "sock", None)
            if push is None:
                push = self._ctx.socket(zmq.PUSH)
                push.setsockopt(zmq.LINGER, 0)
                push.connect(self._wake_addr)
                self._wake_local.sock = push
            push.send(b"!", zmq.NOBLOCK)

    def stop(self) -> None:
        """Ask the loop to finish: running jobs stop and, like queued ones, resume at the
        next start (they stay in the journal)."""
        self._stopping.set()

    # -- loop -----------------------------------------------------------------------------------
    def serve(self) -> None:
        if self.sock is None:
            self.bind()
        assert self.sock is not None
        resumed = self.scheduler.recover()
        self.backend.start(self._report)
        if resumed:
            self._send_all(self.scheduler.dispatch())
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        if self._zap is not None:
            poller.register(self._zap.sock, zmq.POLLIN)
        last_housekeeping = time.monotonic()
        try:
            while not self._stopping.is_set():
                wait = REPLAY_POLL_S if self.scheduler.replays else HOUSEKEEPING_S
                try:
                    ready = dict(poller.poll(int(wait * 1000)))
                except zmq.ZMQError as exc:
                    if exc.errno == errno.EINTR:
                        continue
                    raise
                if self._zap is not None and self._zap.sock in ready:
                    self._zap.handle()
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
                if self.scheduler.replays:
                    self.scheduler.pump_replays(self._send_replayed)
                if time.monotonic() - last_housekeeping > HOUSEKEEPING_S:
                    last_housekeeping = time.monotonic()
                    self.scheduler.housekeeping()
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
        self.estimator.stop()
        self.scheduler.shutdown()
        self.backend.stop()
        deadline = time.monotonic() + STOP_WAIT_S
        while self.backend.busy():
            if time.monotonic() > deadline:
                log.warning("a job did not stop within %gs; exiting anyway", STOP_WAIT_S)
                break
            try:
                kind, job_id, payload = self._reports.get(timeout=0.1)
            except queue.Empty:
                continue
            self._send_all(self.scheduler.on_report(kind, job_id, payload))
        self._drain_reports()
        self.backend.join(timeout=1.0)
        self.journal.close()
        if self._zap is not None:
            self._zap.close()
        # Closes every socket, the workers' wake-up sockets included; the linger lets
        # the final messages go out.
        self._closing = True
        self._ctx.destroy(linger=500)
        log.info("stopped")

    # -- sending ---------------------------------------------------------------------------------
    def _send_replayed(self, out: Out) -> bool:
        """A replayed frame: a full send queue just means "later" (the replay waits)."""
        return self._send(out.identity, out.type, out.fields, out.images, quiet=True)

    def _send(
        self, identity: bytes, msg_type: str, fields: dict, images=(), quiet: bool = False
    ) -> bool:
        frames = protocol.encode(msg_type, fields, images)
        assert self.sock is not None
        try:
            self.sock.send_multipart([identity, *frames], zmq.NOBLOCK, copy=False)
            return True
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:  # the client is gone
                self.names.pop(identity, None)
                self.scheduler.forget_subscriber(identity)
            elif msg_type == protocol.PROGRESS or quiet:
                log.debug("dropped a progress message to a slow client: %s", exc)
            else:
                log.warning("dropped a %s message to a slow client: %s", msg_type, exc)
            return False

    def _send_all(self, outs: list[Out]) -> None:
        for out in outs:
            self._send(out.identity, out.type, out.fields, out.images)

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
            self._refusals.refused("refused a message: %s", exc)
            self._error(identity, exc, exc.req)
            return
        peer = Peer(identity, self._owner(frames[1]), self.names.get(identity, "client"))
        try:
            if msg.type in SCHEDULED:
                self._send_all(getattr(self.scheduler, SCHEDULED[msg.type])(peer, msg))
            else:
                getattr(self, f"_on_{msg.type}")(peer, msg, frames[1])
        except ImpastoError as exc:
            self._refusals.refused("refused %s: %s", msg.type, exc)
            self._error(identity, exc, msg.req, msg.get("job_id"))
        except Exception as exc:  # a bug; answer it and keep serving
            log.exception("error handling %s", msg.type)
            self._error(identity, ImpastoError(f"daemon error: {exc}", INTERNAL), msg.req)

    def _owner(self, frame: zmq.Frame) -> str:
        """The identity libzmq stamped on this connection's messages (ZAP User-Id)."""
        if self._zap is None:
            return ANONYMOUS  # --insecure: everyone is the same nobody
        try:
            user = frame.get("User-Id")
        except zmq.ZMQError:
            user = ""
        return str(user) if user else ANONYMOUS

    def _on_hello(self, peer: Peer, msg: protocol.Message, _frame) -> None:
        if len(self.names) >= MAX_NAMES:
            self.names.pop(next(iter(self.names)))
        self.names[peer.identity] = msg["client"] or "client"
        fields = {
            "req": msg.req,
            "daemon": package_version(),
            "instance": self.instance,
            "pid": os.getpid(),
            "endpoint": self.endpoint,
            "identity": peer.owner[:64],
            "max_message": protocol.MAX_MESSAGE,
        }
        self._send(peer.identity, protocol.WELCOME, fields)

    def _on_ping(self, peer: Peer, msg: protocol.Message, _frame) -> None:
        self._send(peer.identity, protocol.PONG, {"req": msg.req, "instance": self.instance})

    def _on_status(self, peer: Peer, msg: protocol.Message, _frame) -> None:
        self._send(peer.identity, protocol.STATUS_REPLY, {"req": msg.req, "info": self.status()})

    def _on_shutdown(self, peer: Peer, msg: protocol.Message, frame) -> None:
        try:
            where = frame.get("Peer-Address") or ""
        except Exception:
            where = ""
        local = paths.is_loopback(self.endpoint) or where in ("", "::1") or where.startswith("127.")
        if not local:
            raise ImpastoError(
                f"shutdown is only allowed from this machine, not {where}", NOT_ALLOWED
            )
        log.info("shutdown requested by %s", peer.name)
        self._send(peer.identity, protocol.OK, {"req": msg.req})
        self.stop()

    def _on_estimate(self, peer: Peer, msg: protocol.Message, _frame) -> None:
        """Checked here, answered by the estimator's thread (see estimates.py)."""
        n_styles = msg["n_styles"] or 1
        options = self.scheduler.job_options(msg["options"], n_styles)
        self.estimator.ask(peer.identity, msg.req, options, msg["height"], msg["width"], n_styles)

    def status(self) -> dict[str, Any]:
        return {
            "version": package_version(),
            "protocol": protocol.VERSION,
            "endpoint": self.endpoint,
            "pid": os.getpid(),
            "instance": self.instance,
            "uptime": time.time() - self.started,
            **self.backend.info(),
            "engine_error": self.scheduler.engine_error or self.backend.info()["engine_error"],
            "curve": self.curve,
            "max_pixels": self.max_pixels,
            "max_message": protocol.MAX_MESSAGE,
            **self.scheduler.counts(),
            "clients": len(self.names),
            "memory": memory_info(),
        }

    def _drain_reports(self) -> None:
        while True:
            try:
                self._send_all([self._replies.get_nowait()])
            except queue.Empty:
                break
        while True:
            try:
                kind, job_id, payload = self._reports.get_nowait()
            except queue.Empty:
                return
            self._send_all(self.scheduler.on_report(kind, job_id, payload))


# Requests the scheduler answers (its method names); the rest are the server's own.
SCHEDULED = {
    protocol.SUBMIT: "submit",
    protocol.CHUNK: "chunk",
    protocol.CANCEL: "cancel",
    protocol.ATTACH: "attach",
    protocol.JOBS: "list_jobs",
}


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
