"""Client: talk to an Impasto daemon from any editor, the CLI or a script.

Only pyzmq and msgpack: no torch, no Qt, so the same module runs inside Krita's and
GIMP's Python. A GUI pumps ``poll(timeout=0)`` from a timer and never blocks; the CLI and
tests use the blocking ``wait``. A daemon that dies becomes a clear ``ImpastoError``
with code ``daemon_unavailable`` within ``timeout`` seconds, never a hang; the next call
reconnects. A daemon restarted within that time (its jobs are journalled) is followed
again: the client re-attaches to the jobs it watches. A Client is not thread-safe: use it
from one thread.

    client = Client()                       # tcp://127.0.0.1:5755 or $IMPASTO_ENDPOINT
    job = client.submit(content, [style], JobOptions(size=256, iterations=100))
    result = client.wait(job, on_event=print)   # Result(image=RawImage, ...)

Events, in the order a job produces them: ``Accepted`` (also sent again on ``attach``),
any number of ``Progress`` (``frame`` is a RawImage on frame iterations), then exactly
one of ``Result`` (``cancelled=True`` when cancelled while running: the best image so far)
or ``Failed`` (code ``cancelled`` when cancelled while still queued).

A sequence (``submit_sequence``) adds a ``FrameDone`` as each frame finishes, in order;
its ``Result`` carries the last finished frame and ``frames``, the count finished.
Attaching to a sequence replays every finished frame first, then follows it live.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import zmq

from impasto.shared import paths, protocol
from impasto.shared.errors import (
    BAD_MESSAGE,
    DAEMON_UNAVAILABLE,
    TIMEOUT,
    VERSION_MISMATCH,
    ImpastoError,
)
from impasto.shared.options import MAX_SIZE, JobOptions
from impasto.shared.rawimage import RawImage
from impasto.shared.sequence import MAX_SEQUENCE_FRAMES, SequenceOptions

# An estimate may wait for a daemon's engine to load (the daemon waits up to a minute).
ESTIMATE_TIMEOUT = 60.0


# -- events ------------------------------------------------------------------------
@dataclass
class Accepted:
    """The daemon queued the job (or re-subscribed us to it); position 0 = running next."""

    job_id: str
    position: int
    state: str = protocol.QUEUED


@dataclass
class Progress:
    """One optimisation step. ``frame`` is the current image on frame iterations."""

    job_id: str
    iteration: int
    total: int
    scale: int
    n_scales: int
    losses: dict[str, float]
    elapsed: float
    eta: float | None
    frame: RawImage | None = None
    width: int = 0  # size the engine works at on this scale
    height: int = 0
    frame_index: int | None = None  # sequences: the frame being optimised (0-based)
    n_frames: int = 0  # sequences: frames in the job


@dataclass
class Result:
    """The finished image; ``cancelled`` means stopped early with the best image so far."""

    job_id: str
    image: RawImage
    iterations: int
    losses: dict[str, float]
    cancelled: bool
    elapsed: float
    device: str = ""
    frames: int = 0  # sequences: frames finished (the image is the last of them)


@dataclass
class FrameDone:
    """One finished frame of a sequence, at the output size and the submit's depth."""

    job_id: str
    index: int  # 0-based
    n_frames: int
    image: RawImage
    iterations: int
    losses: dict[str, float]
    elapsed: float
    warm: bool  # started from the previous frame (temporal term on)


@dataclass
class Failed:
    """The job ended without an image; ``code`` is one of impasto.shared.errors."""

    job_id: str
    code: str
    message: str


Event = Accepted | Progress | FrameDone | Result | Failed


@dataclass
class _Conn:
    socket: zmq.Socket
    instance: str = ""
    welcome: dict[str, Any] = field(default_factory=dict)


class Client:
    """A connection to one daemon. Methods raise ImpastoError with a stable code."""

    def __init__(
        self,
        endpoint: str | None = None,
        timeout: float = 5.0,
        autostart: bool = False,
        curve_keys: tuple[str | bytes, str | bytes, str | bytes] | None = None,
        name: str = "impasto-client",
        python: str | None = None,
    ):
        """``endpoint`` defaults to $IMPASTO_ENDPOINT or tcp://127.0.0.1:5755.

        ``timeout``: seconds a request, or a watched job's heartbeat, may go unanswered
        before the daemon counts as lost. ``autostart``: start a local daemon (via
        daemonctl, with ``python`` as its interpreter) when none answers. ``curve_keys``:
        (client_public, client_secret, server_public) Z85 keys for a CURVE daemon; for a
        non-loopback endpoint without them, the keys made by ``impasto keys`` are used.
        """
        self.endpoint = paths.check_endpoint(endpoint or paths.default_endpoint())
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = float(timeout)
        self.autostart = autostart
        self.curve_keys = curve_keys
        self.name = name
        self.python = python
        # Kept for callers that read it; the daemon no longer trusts a client-sent id
        # (fairness and ownership come from the connection's proven identity).
        self.client_id = uuid.uuid4().hex
        self._conn: _Conn | None = None
        self._reqs = itertools.count(1)
        self._events: deque[Event] = deque()
        self._replies: dict[int, protocol.Message] = {}
        self._watching: set[str] = set()
        self._last_rx = 0.0
        self._ping_req: int | None = None
        self._ping_sent = 0.0
        self._credit: dict[int, int] = {}  # upload credit the daemon granted, per submit req
        self._reattach: dict[int, str] = {}  # attach requests sent after a daemon restart
        # Frames already handed out per sequence job, so the replay that follows a
        # re-attach after a daemon restart does not repeat them.
        self._frames_seen: dict[str, set[int]] = {}

    # -- connection ---------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def daemon_info(self) -> dict[str, Any]:
        """The daemon's welcome: ``daemon`` (version), ``instance``, ``pid``, ``endpoint``."""
        return dict(self._conn.welcome) if self._conn else {}

    def connect(self) -> dict[str, Any]:
        """Say hello and check versions; start a daemon first if allowed and none answers.

        Returns the daemon's welcome fields. Raises ImpastoError version_mismatch
        ("daemon is version X, client is version Y") or daemon_unavailable.
        """
        if self._conn is not None:
            return self.daemon_info
        try:
            return self._hello()
        except ImpastoError as exc:
            if exc.code != DAEMON_UNAVAILABLE or not self.autostart:
                raise
        from impasto.plugin import daemonctl

        daemonctl.start(self.endpoint, python=self.python)
        return self._hello()

    def close(self) -> None:
        """Drop the connection. Jobs keep running in the daemon; ``attach`` finds them."""
        if self._conn is not None:
            self._conn.socket.close(linger=0)
            self._conn = None
        self._replies.clear()
        self._ping_req = None

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs ---------------------------------------------------------------------------
    def submit(
        self,
        content: RawImage,
        styles: Sequence[RawImage],
        options: JobOptions | dict | None = None,
        init_image: RawImage | None = None,
        frame_size: int | None = None,
        frame_depth: int | None = None,
    ) -> str:
        """Queue a job; returns its id. An ``Accepted`` event follows in ``poll``.

        ``frame_size`` caps the long edge of progress frames (default: the options'
        frame_size, else full size); ``frame_depth`` is 8 or 16 bit (default: the
        content's depth). Options are validated here too, so a typo fails early.
        """
        if not isinstance(content, RawImage):
            raise ImpastoError("content must be a RawImage", protocol.BAD_IMAGE)
        styles = list(styles)
        if not styles or not all(isinstance(s, RawImage) for s in styles):
            raise ImpastoError("give at least one style image (RawImage)", protocol.BAD_IMAGE)
        opts = _options(options)
        images = [content, *styles] + ([init_image] if init_image is not None else [])
        fields = {
            "options": opts.to_dict(),
            "n_styles": len(styles),
            "has_init": init_image is not None,
            "frame_size": opts.frame_size if frame_size is None else frame_size,
            "frame_depth": frame_depth or content.depth,
            "img": [_descriptor(im) for im in images],
        }
        return self._submit(fields, images)

    def submit_sequence(
        self,
        frames: Sequence[RawImage],
        styles: Sequence[RawImage],
        options: JobOptions | dict | None = None,
        sequence: SequenceOptions | dict | None = None,
        frame_size: int | None = None,
        frame_depth: int | None = None,
    ) -> str:
        """Queue an animation: every frame stylised, each warm-started from the last.

        ``frames`` may be a lazy Sequence: each frame is read once, when its bytes are
        sent, and dropped. Every frame must be the first's size; a frame of another
        depth or channel count is converted to the first's. ``FrameDone`` events follow
        in ``poll`` as frames finish (at ``frame_depth``, default the first frame's);
        ``frame_size`` caps progress pictures as for ``submit``.
        """
        count = len(frames)
        if not 2 <= count <= MAX_SEQUENCE_FRAMES:
            raise ImpastoError(
                f"a sequence has 2..{MAX_SEQUENCE_FRAMES} frames, not {count}", protocol.BAD_IMAGE
            )
        first = frames[0]
        if not isinstance(first, RawImage):
            raise ImpastoError("frames must be RawImages", protocol.BAD_IMAGE)
        styles = list(styles)
        if not styles or not all(isinstance(s, RawImage) for s in styles):
            raise ImpastoError("give at least one style image (RawImage)", protocol.BAD_IMAGE)
        opts = _options(options)
        seq = _sequence_options(sequence)
        fields = {
            "options": opts.to_dict(),
            "n_styles": len(styles),
            "frame_size": opts.frame_size if frame_size is None else frame_size,
            "frame_depth": frame_depth or first.depth,
            "n_frames": count,
            "sequence": seq.to_dict(),
            "img": [_descriptor(first)] * count + [_descriptor(s) for s in styles],
        }
        return self._submit(fields, _frames_like_first(frames, first, styles))

    def _submit(self, fields: dict, images: Iterable[RawImage]) -> str:
        self._ensure()
        req = self._send(protocol.SUBMIT, fields)
        upload = self._reply(req, protocol.SUBMIT)
        reply = self._upload(req, upload, images) if upload.type == protocol.UPLOAD else upload
        job_id = reply["job_id"]
        self._watch(job_id)
        return job_id

    def _upload(self, req: int, upload: protocol.Message, images: Iterable[RawImage]):
        """Send the images in chunks, never more than the daemon's credit allows (the
        ZeroMQ guide's credit-based flow control); returns the ``accepted`` reply. An
        image that cannot be read abandons the upload on the daemon too."""
        chunk, upload_id = upload["chunk"], upload["upload_id"]
        self._credit[req] = upload["credit"]
        try:
            for index, image in enumerate(images):
                data = memoryview(image.data).cast("B")
                for offset in range(0, len(data), chunk):
                    deadline = time.monotonic() + self.timeout
                    while self._credit.get(req, 0) <= 0 and req not in self._replies:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise self._lost(f"gave no upload credit within {self.timeout:g}s")
                        self._receive(remaining)
                    if req in self._replies:  # an error ends the upload early
                        return self._reply(req, protocol.SUBMIT)
                    self._credit[req] -= 1
                    piece = {"req": req, "upload_id": upload_id, "image": index, "offset": offset}
                    self._send(protocol.CHUNK, piece, data=data[offset : offset + chunk], req=req)
            return self._reply(req, protocol.SUBMIT)
        except ImpastoError as exc:
            if exc.code != DAEMON_UNAVAILABLE and self._conn is not None:
                self._send(protocol.CANCEL, {"job_id": upload_id})  # its ok is not awaited
            raise
        finally:
            self._credit.pop(req, None)

    def poll(self, timeout: float = 0.0) -> list[Event]:
        """Events that arrived, waiting at most ``timeout`` seconds for the first one.

        Never blocks longer than ``timeout``. While jobs are watched it also pings the
        daemon, and raises ImpastoError(daemon_unavailable) once it has been silent for
        ``self.timeout`` seconds or has restarted (its jobs are then gone). It does not
        connect by itself (that could block): when not connected it returns what is
        already buffered or raises daemon_unavailable at once; any other call reconnects.
        """
        if self._conn is None:
            if self._events:
                events = list(self._events)
                self._events.clear()
                return events
            raise ImpastoError(
                f"not connected to the Impasto daemon at {self.endpoint}", DAEMON_UNAVAILABLE
            )
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            self._heartbeat()
            while self._receive(0):
                pass
            if self._events:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._receive(min(remaining, self._hb_interval()))
        events = list(self._events)
        self._events.clear()
        return events

    def wait(
        self,
        job_id: str,
        on_event: Callable[[Event], Any] | None = None,
        timeout: float | None = None,
    ) -> Result:
        """Block until ``job_id`` ends; return its Result, calling ``on_event`` on the way.

        A Failed job raises ImpastoError with the job's code (``cancelled`` for a job
        cancelled while queued). ``timeout`` (None = no limit) raises code ``timeout``;
        events of other jobs stay queued for ``poll``.
        """
        if job_id not in self._watching:
            self.attach(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        others: list[Event] = []
        try:
            while True:
                step = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if step <= 0:
                    raise ImpastoError(f"job {job_id} did not finish within {timeout}s", TIMEOUT)
                for event in self.poll(step):
                    if event.job_id != job_id:
                        others.append(event)
                        continue
                    if on_event is not None:
                        on_event(event)
                    if isinstance(event, Result):
                        return event
                    if isinstance(event, Failed):
                        raise ImpastoError(event.message, event.code)
        finally:
            self._events.extendleft(reversed(others))

    def cancel(self, job_id: str) -> None:
        """Cancel a queued or running job; its final event follows in ``poll``."""
        self._request(protocol.CANCEL, {"job_id": job_id})

    def attach(self, job_id: str) -> Accepted:
        """Follow a job submitted earlier (by any client): its current state, the latest
        progress frame, and its Result or Failed event if it already ended (results are
        kept for the daemon's --retention time). Frames keep the size and depth the
        submitter asked for. A sequence's finished frames come first, as ``FrameDone``
        events. Unknown ids raise code unknown_job.
        """
        reply = self._request(protocol.ATTACH, {"job_id": job_id})
        self._frames_seen.pop(job_id, None)  # asked for: replay every frame
        self._watch(job_id)
        return Accepted(job_id, reply["position"], reply["state"])

    def status(self) -> dict[str, Any]:
        """The daemon's state: version, endpoint, pid, uptime, devices, model_loaded,
        queued, running, memory, and counts of finished jobs."""
        return self._request(protocol.STATUS)["info"]

    def estimate(
        self,
        width: int,
        height: int,
        options: JobOptions | dict | None = None,
        n_styles: int = 1,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """What a job on a ``width`` x ``height`` content would take, without running it.

        Returns the daemon engine's plan: ``width``/``height`` (output), ``scales``
        (width, height, iterations, tile), ``memory_estimate`` and ``memory_budget``
        (bytes), ``seconds``, ``finest_expected`` (the finest scale's iterations that
        time assumes where the job ends once that scale's loss is flat, else None),
        ``speed_measured`` (False: a default speed, from a daemon started with
        --no-warmup that has run no job yet) and ``device``. Raises the
        errors a submit would meet (``bad_options``, ``image_too_large``,
        ``too_large_for_device``…). ``timeout``
        (default: at least 60 s) covers a daemon whose engine is still loading.
        """
        fields = {
            "options": _options(options).to_dict(),
            "width": width,
            "height": height,
            "n_styles": n_styles,
        }
        self._ensure()
        req = self._send(protocol.ESTIMATE, fields)
        wait = timeout if timeout is not None else max(self.timeout, ESTIMATE_TIMEOUT)
        return self._reply(req, protocol.ESTIMATE, wait)["info"]

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the daemon knows: id, state, position, client, iteration, total..."""
        return self._request(protocol.JOBS)["jobs"]

    def shutdown(self) -> None:
        """Ask the daemon to cancel its jobs and exit (refused for non-local clients)."""
        self._request(protocol.SHUTDOWN)
        self.close()

    def ping(self) -> float:
        """Round-trip time of one ping, in seconds."""
        start = time.perf_counter()
        self._request(protocol.PING)
        return time.perf_counter() - start

    # -- internals ----------------------------------------------------------------------
    def _watch(self, job_id: str) -> None:
        if not self._watching:
            self._last_rx = time.monotonic()
        self._watching.add(job_id)

    def _hb_interval(self) -> float:
        return max(0.05, min(1.0, self.timeout / 4))

    def _socket(self) -> zmq.Socket:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        keys = self.curve_keys
        if keys is None and not paths.is_loopback(self.endpoint):
            from impasto.shared import keys as keymod

            keys = keymod.client_keys_or_none()
        if keys is not None:
            public, secret, server = (k.encode() if isinstance(k, str) else k for k in keys)
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = (
                public,
                secret,
                server,
            )
        elif paths.is_loopback(self.endpoint):
            # Prove we are the daemon's user: the token only this user can read, sent as
            # the PLAIN password (never to a remote daemon).
            from impasto.shared import keys as keymod

            token = keymod.local_token()
            if token is None:
                sock.close(linger=0)
                raise ImpastoError(
                    f"no Impasto daemon at {self.endpoint} (no local token in "
                    f"{paths.runtime_dir()}: start one with 'impasto daemon start')",
                    DAEMON_UNAVAILABLE,
                )
            sock.plain_username = keymod.LOCAL_USER.encode()
            sock.plain_password = token.encode()
        sock.connect(self.endpoint)
        return sock

    def _hello(self) -> dict[str, Any]:
        self._conn = _Conn(self._socket())
        try:
            reply = self._request(protocol.HELLO, {"client": self.name})
        except ImpastoError:
            self.close()
            raise
        self._conn.instance = reply["instance"]
        self._conn.welcome = dict(reply.fields)
        self._conn.welcome.pop("req", None)
        self._last_rx = time.monotonic()
        return self.daemon_info

    def _ensure(self) -> None:
        if self._conn is None:
            self.connect()

    def _lost(self, why: str) -> ImpastoError:
        lost = sorted(self._watching)
        self.close()
        self._watching.clear()
        jobs = f"; job(s) {', '.join(lost)} no longer followed" if lost else ""
        return ImpastoError(f"Impasto daemon at {self.endpoint} {why}{jobs}", DAEMON_UNAVAILABLE)

    def _send(
        self,
        msg_type: str,
        fields: dict | None = None,
        images: Sequence = (),
        data: Any = None,
        req: int | None = None,
    ) -> int:
        if self._conn is None:
            raise self._lost("is not connected")
        req = next(self._reqs) if req is None else req
        frames = protocol.encode(msg_type, {**(fields or {}), "req": req}, images, data)
        limit = self._conn.welcome.get("max_message")
        size = sum(len(f) for f in frames)
        if limit and size > limit:  # the daemon would drop it unread: say so instead
            raise ImpastoError(
                f"a '{msg_type}' message of {size} bytes is over the daemon's limit of "
                f"{limit} bytes",
                BAD_MESSAGE,
            )
        try:
            self._conn.socket.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            raise self._lost(f"cannot be sent to ({exc})") from None
        return req

    def _request(
        self, msg_type: str, fields: dict | None = None, images: Sequence = ()
    ) -> protocol.Message:
        if msg_type != protocol.HELLO:
            self._ensure()
        return self._reply(self._send(msg_type, fields, images), msg_type)

    def _reply(self, req: int, msg_type: str, timeout: float | None = None) -> protocol.Message:
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while req not in self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._lost(
                    f"did not answer '{msg_type}' within {timeout:g}s (a daemon of "
                    "another user, or one that refused our token, never answers)"
                )
            self._receive(remaining)
        reply = self._replies.pop(req)
        if reply.type == protocol.ERROR:
            raise ImpastoError(reply["message"], reply["code"])
        return reply

    def _heartbeat(self) -> None:
        if not self._watching or self._conn is None:
            return
        now = time.monotonic()
        silent, every = now - self._last_rx, self._hb_interval()
        if silent > self.timeout:  # any message counts as a sign of life
            raise self._lost(f"stopped answering (silent for {silent:.1f}s)")
        if silent > every and (self._ping_req is None or now - self._ping_sent > every):
            self._ping_req = self._send(protocol.PING)
            self._ping_sent = now

    def _receive(self, timeout: float) -> bool:
        """Handle at most one incoming message; False if none came within ``timeout``."""
        if self._conn is None:
            raise self._lost("is not connected")
        sock = self._conn.socket
        if not sock.poll(int(max(0.0, timeout) * 1000)):
            return False
        frames = sock.recv_multipart(copy=False)
        self._last_rx = time.monotonic()
        try:
            msg = protocol.decode(
                frames, protocol.REPLIES, max_pixels=MAX_SIZE * MAX_SIZE, me="client", peer="daemon"
            )
        except protocol.ProtocolError as exc:
            if exc.code == VERSION_MISMATCH:
                self.close()
            raise ImpastoError(f"unreadable message from the daemon: {exc}", exc.code) from None
        self._dispatch(msg)
        return True

    def _dispatch(self, msg: protocol.Message) -> None:
        kind, req = msg.type, msg.req
        conn = self._conn
        assert conn is not None  # _receive checked
        if kind == protocol.CREDIT_MSG:
            if req in self._credit:
                self._credit[req] += msg["credit"]
            return
        if kind == protocol.PONG:
            if msg["instance"] != conn.instance and conn.instance:
                # A restarted daemon resumes its journalled jobs: follow them again.
                conn.instance = msg["instance"]
                for job_id in sorted(self._watching):
                    self._reattach[self._send(protocol.ATTACH, {"job_id": job_id})] = job_id
            if req == self._ping_req:
                self._ping_req = None
                return
        if kind == protocol.ACCEPTED:
            self._events.append(Accepted(msg["job_id"], msg["position"], msg["state"]))
        elif kind == protocol.PROGRESS:
            frame = msg.images[0] if msg.images else None
            self._events.append(
                Progress(
                    msg["job_id"],
                    msg["iteration"],
                    msg["total"],
                    msg["scale"],
                    msg["n_scales"],
                    msg["losses"],
                    msg["elapsed"],
                    msg["eta"],
                    frame,
                    msg["width"] or 0,
                    msg["height"] or 0,
                    msg["frame"],
                    msg["n_frames"] or 0,
                )
            )
        elif kind == protocol.FRAME:
            seen = self._frames_seen.setdefault(msg["job_id"], set())
            if msg["index"] not in seen:
                seen.add(msg["index"])
                self._events.append(
                    FrameDone(
                        msg["job_id"],
                        msg["index"],
                        msg["n_frames"],
                        msg.images[0],
                        msg["iterations"],
                        msg["losses"],
                        msg["elapsed"],
                        msg["warm"],
                    )
                )
        elif kind == protocol.RESULT:
            self._watching.discard(msg["job_id"])
            self._frames_seen.pop(msg["job_id"], None)
            self._events.append(
                Result(
                    msg["job_id"],
                    msg.images[0],
                    msg["iterations"],
                    msg["losses"],
                    msg["cancelled"],
                    msg["elapsed"],
                    msg["device"] or "",
                    msg["frames"] or 0,
                )
            )
        elif kind == protocol.ERROR and req in self._reattach:  # the job did not survive
            job_id = self._reattach.pop(req)
            self._watching.discard(job_id)
            self._events.append(Failed(job_id, msg["code"], msg["message"]))
        elif kind == protocol.FAILED or (kind == protocol.ERROR and req is None and msg["job_id"]):
            self._watching.discard(msg["job_id"])
            self._frames_seen.pop(msg["job_id"], None)
            self._events.append(Failed(msg["job_id"], msg["code"], msg["message"]))
        if req is not None and kind not in (protocol.PROGRESS, protocol.FRAME):
            self._replies[req] = msg
            if len(self._replies) > 64:  # replies to requests that timed out
                self._replies.pop(next(iter(self._replies)))


_Checked = TypeVar("_Checked", JobOptions, SequenceOptions)


def _checked(kind: type[_Checked], value: _Checked | dict | None) -> _Checked:
    """Options as given, checked here (``from_dict`` is the one validator; its
    OptionsError is an ImpastoError), or the defaults for None."""
    if value is None:
        return kind()
    if isinstance(value, kind):
        value.validate()
        return value
    return kind.from_dict(dict(value))


def _options(options: JobOptions | dict | None) -> JobOptions:
    return _checked(JobOptions, options)


def _sequence_options(sequence: SequenceOptions | dict | None) -> SequenceOptions:
    return _checked(SequenceOptions, sequence)


def _descriptor(image: RawImage) -> list[int]:
    return [image.width, image.height, image.channels, image.depth]


def _frames_like_first(
    frames: Sequence[RawImage], first: RawImage, styles: list[RawImage]
) -> Iterator[RawImage]:
    """The frames, read one at a time and brought to the first's channels and depth
    (the submit announced the first's header for all), then the styles."""
    for index in range(len(frames)):
        frame = first if index == 0 else frames[index]
        if not isinstance(frame, RawImage):
            raise ImpastoError(f"frame {index} is not a RawImage", protocol.BAD_IMAGE)
        if (frame.width, frame.height) != (first.width, first.height):
            raise ImpastoError(
                f"frame {index} is {frame.width}x{frame.height}, frame 0 is "
                f"{first.width}x{first.height}: every frame must be the same size",
                protocol.BAD_IMAGE,
            )
        frame = frame.to_depth(first.depth)
        if frame.channels != first.channels:
            frame = frame.with_alpha() if first.channels == 4 else frame.without_alpha()
        yield frame
    yield from styles
