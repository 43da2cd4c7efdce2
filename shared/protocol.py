"""The wire protocol between clients and the daemon (spec: docs/protocol.md).

A message is one ZeroMQ multipart message: frame 0 is a msgpack map (the header), and
every image rides in its own following frame as raw ``RawImage`` bytes, described by the
header's ``img`` list. So pixels are never base64'd, never packed into msgpack and, with
``copy=False`` sockets, never copied on the way through. This module knows no sockets and
no torch: it turns frames into validated ``Message`` objects and back, and every field of
every message is checked here, once, before anything is allocated for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgpack

from impasto.shared.errors import (
    BAD_IMAGE,
    BAD_MESSAGE,
    IMAGE_TOO_LARGE,
    VERSION_MISMATCH,
    ImpastoError,
)
from impasto.shared.options import DEFAULT_MAX_PIXELS, MAX_SIZE, MAX_STYLES
from impasto.shared.rawimage import ImageError, RawImage, check_header
from impasto.shared.sequence import MAX_SEQUENCE_FRAMES

# Bump on any incompatible change; both sides refuse a peer with another version.
# 2: images upload in chunks with credit-based flow control; identity from the transport.
VERSION = 2

MAX_HEADER_BYTES = 64 * 1024  # a header is a few hundred bytes; options included
MAX_STRING = 4096
MAX_JOB_ID = 64
MAX_FRAMES = 1 + 1 + MAX_STYLES + 1  # header, content, styles, init image
# A submit announces at most this many images (they travel later, in chunks): a
# sequence's frames and its styles. 1008 headers are ~13 KB of the 64 KiB header.
MAX_ANNOUNCED = MAX_SEQUENCE_FRAMES + MAX_STYLES
MAX_LIST = 10_000  # job lists and the like
# Uploads travel in chunks of at most CHUNK_BYTES, at most CREDIT chunks in flight (the
# ZeroMQ guide's file-transfer pattern), so a stalled or hostile sender holds one chunk.
# 1 MiB x 8 moved a 4096x4096 16-bit RGBA image (128 MiB) over loopback at ~1 GB/s.
CHUNK_BYTES = 1 << 20
CREDIT = 8
MAX_MESSAGE = CHUNK_BYTES + MAX_HEADER_BYTES  # the daemon's ZMQ_MAXMSGSIZE

# Client -> daemon
HELLO = "hello"
SUBMIT = "submit"
CANCEL = "cancel"
ATTACH = "attach"
STATUS = "status"
JOBS = "jobs"
SHUTDOWN = "shutdown"
PING = "ping"
CHUNK = "chunk"  # one piece of a submit's images
ESTIMATE = "estimate"  # what a job would take (time, memory), before submitting it
# Daemon -> client
WELCOME = "welcome"
ACCEPTED = "accepted"
PROGRESS = "progress"
RESULT = "result"
FAILED = "failed"  # a job ended in an error
ERROR = "error"  # a request could not be served
STATUS_REPLY = "status_reply"
JOBS_REPLY = "jobs_reply"
OK = "ok"
PONG = "pong"
UPLOAD = "upload"  # a submit was checked: send its images in chunks
CREDIT_MSG = "credit"  # the daemon stored chunks: send that many more
ESTIMATE_REPLY = "estimate_reply"
FRAME = "frame"  # one finished frame of a sequence job

REQUESTS = (HELLO, SUBMIT, CANCEL, ATTACH, STATUS, JOBS, SHUTDOWN, PING, CHUNK, ESTIMATE)
REPLIES = (
    WELCOME,
    ACCEPTED,
    PROGRESS,
    RESULT,
    FAILED,
    ERROR,
    STATUS_REPLY,
    JOBS_REPLY,
    OK,
    PONG,
    UPLOAD,
    CREDIT_MSG,
    ESTIMATE_REPLY,
    FRAME,
)

# Job states as the daemon reports them.
QUEUED, RUNNING, DONE, FAILED_STATE, CANCELLED = "queued", "running", "done", "failed", "cancelled"
JOB_STATES = (QUEUED, RUNNING, DONE, FAILED_STATE, CANCELLED)


class ProtocolError(ImpastoError):
    """A message that breaks the protocol; ``code`` says how (bad_message, bad_image...)."""

    code = BAD_MESSAGE

    def __init__(self, message: str, code: str | None = None, req: int | None = None):
        super().__init__(message, code)
        self.req = req  # the request id, when the header got far enough to carry one


@dataclass
class Message:
    """A decoded, validated message: its type, header fields and images."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    images: list[RawImage] = field(default_factory=list)

    @property
    def req(self) -> int | None:
        return self.fields.get("req")

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


# -- field checks: each returns the cleaned value or raises ProtocolError --------------
Check = Callable[[str, Any], Any]


def _bad(name: str, why: str) -> ProtocolError:
    return ProtocolError(f"field '{name}': {why}")


def integer(low: int, high: int) -> Check:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(name, f"expected an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise _bad(name, f"{value} is outside {low}..{high}")
        return value

    return check


def number(low: float = -1e300, high: float = 1e300) -> Check:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(name, f"expected a number, got {type(value).__name__}")
        value = float(value)
        if math.isnan(value) or not low <= value <= high:
            raise _bad(name, f"{value} is outside {low:g}..{high:g}")
        return value

    return check


def text(max_len: int = MAX_STRING, empty: bool = False) -> Check:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise _bad(name, f"expected a string, got {type(value).__name__}")
        if len(value) > max_len:
            raise _bad(name, f"string of {len(value)} characters, the limit is {max_len}")
        if not value and not empty:
            raise _bad(name, "must not be empty")
        return value

    return check


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, f"expected true or false, got {type(value).__name__}")
    return value


def one_of(*allowed: Any) -> Check:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, bool) or value not in allowed:
            raise _bad(name, f"{value!r} is not one of {', '.join(map(str, allowed))}")
        return value

    return check


def optional(inner: Check) -> Check:
    def check(name: str, value: Any) -> Any:
        return None if value is None else inner(name, value)

    return check


def mapping(max_items: int = 256) -> Check:
    def check(name: str, value: Any) -> dict:
        if not isinstance(value, dict):
            raise _bad(name, f"expected a map, got {type(value).__name__}")
        if len(value) > max_items:
            raise _bad(name, f"{len(value)} entries, the limit is {max_items}")
        if not all(isinstance(k, str) for k in value):
            raise _bad(name, "keys must be strings")
        return value

    return check


def losses(name: str, value: Any) -> dict[str, float]:
    value = mapping(32)(name, value)
    out = {}
    for key, loss in value.items():
        if isinstance(loss, bool) or not isinstance(loss, int | float):
            raise _bad(name, f"loss '{key}' is not a number")
        out[key] = float(loss)
    return out


def list_of(inner: Check, max_len: int = MAX_LIST) -> Check:
    def check(name: str, value: Any) -> list:
        if not isinstance(value, list | tuple):
            raise _bad(name, f"expected a list, got {type(value).__name__}")
        if len(value) > max_len:
            raise _bad(name, f"{len(value)} items, the limit is {max_len}")
        return [inner(f"{name}[{i}]", v) for i, v in enumerate(value)]

    return check


REQ = integer(0, 2**63 - 1)
JOB_ID = text(MAX_JOB_ID)
DURATION = number(0.0, 1e12)
FRAME_SIZE = optional(integer(16, MAX_SIZE))
FRAME_DEPTH = one_of(8, 16)

# Per message type: field -> (check, required). Unknown fields are refused, so a typo
# in a client is an error rather than a silently ignored setting.
SCHEMAS: dict[str, dict[str, tuple[Check, bool]]] = {
    HELLO: {"req": (REQ, True), "client": (text(200), False)},
    SUBMIT: {
        "req": (REQ, True),
        "options": (mapping(), True),
        "n_styles": (integer(1, MAX_STYLES), True),
        "has_init": (boolean, False),
        "frame_size": (FRAME_SIZE, False),
        "frame_depth": (FRAME_DEPTH, False),
        # A sequence: n_frames content frames (one size), then the styles; no init.
        "n_frames": (integer(2, MAX_SEQUENCE_FRAMES), False),
        "sequence": (mapping(), False),  # SequenceOptions; checked by its from_dict
    },
    CHUNK: {
        "req": (REQ, True),  # the submit's
        "upload_id": (JOB_ID, True),
        "image": (integer(0, MAX_ANNOUNCED), True),
        "offset": (integer(0, 2**62), True),
    },
    CANCEL: {"req": (REQ, True), "job_id": (JOB_ID, True)},
    ATTACH: {"req": (REQ, True), "job_id": (JOB_ID, True)},
    STATUS: {"req": (REQ, True)},
    JOBS: {"req": (REQ, True)},
    SHUTDOWN: {"req": (REQ, True)},
    PING: {"req": (REQ, True)},
    WELCOME: {
        "req": (REQ, True),
        "daemon": (text(64), True),  # the daemon's package version
        "instance": (text(64), True),  # changes on every daemon start
        "pid": (integer(0, 2**31), True),
        "endpoint": (text(), True),
        "identity": (text(64), True),  # whose jobs this connection sees
        "max_message": (integer(1024, 2**62), True),  # bigger messages are dropped unread
    },
    UPLOAD: {
        "req": (REQ, True),
        "upload_id": (JOB_ID, True),
        "chunk": (integer(1024, 2**62), True),
        "credit": (integer(1, 1024), True),
    },
    CREDIT_MSG: {
        "req": (REQ, True),
        "upload_id": (JOB_ID, True),
        "credit": (integer(1, 1024), True),
    },
    ACCEPTED: {
        "req": (optional(REQ), False),
        "job_id": (JOB_ID, True),
        "position": (integer(0, 2**31), True),
        "state": (one_of(*JOB_STATES), True),
    },
    PROGRESS: {
        "job_id": (JOB_ID, True),
        "iteration": (integer(0, 2**31), True),
        "total": (integer(0, 2**31), True),
        "scale": (integer(0, 64), True),
        "n_scales": (integer(0, 64), True),
        "width": (integer(0, 2**31), False),
        "height": (integer(0, 2**31), False),
        "losses": (losses, True),
        "elapsed": (DURATION, True),
        "eta": (optional(DURATION), False),
        "frame": (integer(0, MAX_SEQUENCE_FRAMES), False),  # sequences: frame being made
        "n_frames": (integer(0, MAX_SEQUENCE_FRAMES), False),
    },
    FRAME: {
        "job_id": (JOB_ID, True),
        "index": (integer(0, MAX_SEQUENCE_FRAMES), True),
        "n_frames": (integer(1, MAX_SEQUENCE_FRAMES), True),
        "iterations": (integer(0, 2**31), True),
        "losses": (losses, True),
        "elapsed": (DURATION, True),
        "warm": (boolean, True),
    },
    RESULT: {
        "job_id": (JOB_ID, True),
        "iterations": (integer(0, 2**31), True),
        "losses": (losses, True),
        "cancelled": (boolean, True),
        "elapsed": (DURATION, True),
        "device": (text(64, empty=True), False),
        "frames": (integer(0, MAX_SEQUENCE_FRAMES), False),  # sequences: frames finished
    },
    FAILED: {"job_id": (JOB_ID, True), "code": (text(64), True), "message": (text(), True)},
    ERROR: {
        "req": (optional(REQ), False),
        "code": (text(64), True),
        "message": (text(), True),
        "job_id": (optional(JOB_ID), False),
    },
    STATUS_REPLY: {"req": (REQ, True), "info": (mapping(), True)},
    JOBS_REPLY: {"req": (REQ, True), "jobs": (list_of(mapping()), True)},
    OK: {"req": (REQ, True), "job_id": (optional(JOB_ID), False)},
    PONG: {"req": (REQ, True), "instance": (text(64), True)},
    # The content's size: the daemon plans the job as a submit of that content would run.
    ESTIMATE: {
        "req": (REQ, True),
        "options": (mapping(), True),
        "width": (integer(1, MAX_SIZE), True),
        "height": (integer(1, MAX_SIZE), True),
        "n_styles": (integer(1, MAX_STYLES), False),  # default 1
    },
    ESTIMATE_REPLY: {"req": (REQ, True), "info": (mapping(), True)},
}

# How many images each message type carries: exact count or a function of the fields.
IMAGE_COUNT: dict[str, Callable[[dict], int]] = {
    PROGRESS: lambda f: -1,  # zero or one frame
    RESULT: lambda f: 1,
    FRAME: lambda f: 1,
    CHUNK: lambda f: -2,  # one frame of raw bytes, not an image
}
# Messages whose images are announced in the header and travel later, in chunks.
ANNOUNCED: dict[str, Callable[[dict], int]] = {
    SUBMIT: lambda f: (f.get("n_frames") or 1) + f["n_styles"] + (1 if f.get("has_init") else 0),
}


# -- encoding ------------------------------------------------------------------------
def encode(
    msg_type: str,
    fields: dict[str, Any] | None = None,
    images: Sequence = (),
    data: Any = None,
) -> list:
    """Frames for ``send_multipart(..., copy=False)``: the header, then each image's bytes
    (or, for a chunk, its ``data``)."""
    header = {"v": VERSION, "t": msg_type}
    header.update({k: v for k, v in (fields or {}).items() if v is not None})
    if images:
        header["img"] = [[im.width, im.height, im.channels, im.depth] for im in images]
    tail = [data] if data is not None else [im.data for im in images]
    return [msgpack.packb(header, use_bin_type=True), *tail]


# -- decoding ------------------------------------------------------------------------
def decode(
    frames: Sequence,
    expect: Sequence[str] = REQUESTS,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    me: str = "daemon",
    peer: str = "client",
) -> Message:
    """Validate and decode a multipart message (bytes or zmq.Frame items).

    ``expect`` are the message types this side accepts. Raises ProtocolError with code
    bad_message, bad_image, image_too_large or version_mismatch; ``.req`` is set when
    the header was readable, so the error reply can name the request it answers.
    """
    if not frames:
        raise ProtocolError("empty message")
    if len(frames) > MAX_FRAMES:
        raise ProtocolError(f"message has {len(frames)} frames, the limit is {MAX_FRAMES}")
    raw = frames[0]
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(
            f"header is {len(raw)} bytes, the limit is {MAX_HEADER_BYTES}: "
            "images go in their own frames"
        )
    try:
        # msgpack bounds every container by the buffer's length, itself capped above.
        header = msgpack.unpackb(memoryview(raw), raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types for garbage
        raise ProtocolError(f"header is not valid msgpack ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a map, got {type(header).__name__}")
    req = header.get("req")
    req = req if isinstance(req, int) and not isinstance(req, bool) and req >= 0 else None

    version = header.get("v")
    if type(version) is not int or version != VERSION:  # true and 1.0 are not versions
        raise ProtocolError(
            f"{me} is protocol version {VERSION}, {peer} is protocol version {version!r}: "
            "install the same Impasto version on both sides",
            VERSION_MISMATCH,
            req,
        )
    msg_type = header.get("t")
    if not isinstance(msg_type, str) or msg_type not in expect:
        shown = msg_type if isinstance(msg_type, str) else type(msg_type).__name__
        raise ProtocolError(f"unknown message type {shown!r}"[:300], req=req)
    try:
        fields = _check_fields(msg_type, header)
        if msg_type == ESTIMATE:
            _estimate_size(fields, max_pixels)
        images = _decode_images(msg_type, fields, header.get("img"), frames[1:], max_pixels)
    except ProtocolError as exc:
        exc.req = req
        raise
    return Message(msg_type, fields, images)


def _check_fields(msg_type: str, header: dict) -> dict[str, Any]:
    schema = SCHEMAS[msg_type]
    for key in header:
        if key not in schema and key not in ("v", "t", "img"):
            raise ProtocolError(f"{msg_type}: unknown field {str(key)[:64]!r}")
    out = {}
    for name, (check, required) in schema.items():
        if name not in header or header[name] is None:
            if required:
                raise ProtocolError(f"{msg_type}: missing field '{name}'")
            out[name] = None
            continue
        try:
            out[name] = check(name, header[name])
        except ProtocolError as exc:
            raise ProtocolError(f"{msg_type}: {exc}") from None
    return out


def _decode_images(
    msg_type: str, fields: dict, descriptors: Any, frames: Sequence, max_pixels: int | None
) -> list[RawImage]:
    descriptors = [] if descriptors is None else descriptors
    most = MAX_ANNOUNCED + 1 if msg_type in ANNOUNCED else MAX_FRAMES
    if not isinstance(descriptors, list) or len(descriptors) > most:
        raise ProtocolError(f"{msg_type}: 'img' must be a list of image headers")
    if msg_type in ANNOUNCED:
        return _announced(msg_type, fields, descriptors, frames, max_pixels)
    counter = IMAGE_COUNT.get(msg_type)
    wanted = counter(fields) if counter else 0
    if wanted == -2:
        if len(frames) != 1 or descriptors:
            raise ProtocolError(f"{msg_type}: carries exactly one data frame and no 'img'")
        if len(frames[0]) > CHUNK_BYTES:
            raise ProtocolError(
                f"{msg_type}: {len(frames[0])} bytes, the chunk limit is {CHUNK_BYTES}"
            )
        fields["data"] = frames[0]
        return []
    if wanted == -1:
        if len(descriptors) > 1:
            raise ProtocolError(f"{msg_type}: carries at most one image, not {len(descriptors)}")
    elif len(descriptors) != wanted:
        raise ProtocolError(f"{msg_type}: needs {wanted} image(s), header lists {len(descriptors)}")
    if len(frames) != len(descriptors):
        raise ProtocolError(
            f"{msg_type}: header lists {len(descriptors)} image(s) but {len(frames)} "
            "pixel frame(s) arrived (truncated multipart message?)"
        )
    images = []
    for i, (desc, frame) in enumerate(zip(descriptors, frames, strict=True)):
        width, height, channels, depth = _descriptor(msg_type, i, desc, max_pixels)
        try:
            # RawImage takes any buffer; a memoryview keeps the frame zero-copy.
            pixels = cast(bytes, memoryview(frame))
            images.append(RawImage(width, height, channels, depth, pixels))
        except ImageError as exc:
            raise ProtocolError(f"{msg_type}: image {i}: {exc}", BAD_IMAGE) from None
    return images


def _descriptor(msg_type: str, i: int, desc: Any, max_pixels: int | None) -> tuple:
    if not isinstance(desc, list) or len(desc) != 4:
        raise ProtocolError(
            f"{msg_type}: image {i} header must be [width, height, channels, depth]"
        )
    width, height, channels, depth = desc
    try:  # sizes first, so a 100000x100000 header is refused before anything else
        check_header(width, height, channels, depth, max_pixels)
    except ImageError as exc:
        code = IMAGE_TOO_LARGE if "over the limit" in str(exc) else BAD_IMAGE
        raise ProtocolError(f"{msg_type}: image {i}: {exc}", code) from None
    return width, height, channels, depth


def _announced(
    msg_type: str, fields: dict, descriptors: list, frames: Sequence, max_pixels: int | None
) -> list[RawImage]:
    """Check the image headers of a message whose pixels follow in chunks; stores
    ``fields["img"]`` as a list of (width, height, channels, depth)."""
    wanted = ANNOUNCED[msg_type](fields)
    if len(descriptors) != wanted:
        raise ProtocolError(f"{msg_type}: needs {wanted} image(s), header lists {len(descriptors)}")
    if frames:
        raise ProtocolError(
            f"{msg_type}: pixels travel in '{CHUNK}' messages after the daemon's "
            f"'{UPLOAD}' reply, not in the {msg_type} message itself"
        )
    fields["img"] = [_descriptor(msg_type, i, d, max_pixels) for i, d in enumerate(descriptors)]
    if msg_type == SUBMIT:
        _check_sequence(fields)
    return []


def _estimate_size(fields: dict, max_pixels: int | None) -> None:
    """An estimate's content size against the pixel limit a submit of it would meet."""
    width, height = fields["width"], fields["height"]
    if max_pixels is not None and width * height > max_pixels:
        raise ProtocolError(
            f"{ESTIMATE}: a {width}x{height} image is {width * height:,} pixels, over the "
            f"limit of {max_pixels:,}",
            IMAGE_TOO_LARGE,
        )


def _check_sequence(fields: dict) -> None:
    """A sequence submit: no init image, every content frame the first frame's size."""
    n_frames = fields.get("n_frames")
    if n_frames is None:
        if fields.get("sequence") is not None:
            raise ProtocolError(f"{SUBMIT}: 'sequence' options need 'n_frames'")
        return
    if fields.get("has_init"):
        raise ProtocolError(
            f"{SUBMIT}: 'has_init' cannot go with 'n_frames': a sequence's frames start "
            "from the previous stylised frame"
        )
    width, height = fields["img"][0][:2]
    for i, desc in enumerate(fields["img"][1:n_frames], start=1):
        if desc[:2] != (width, height):
            raise ProtocolError(
                f"{SUBMIT}: frame {i} is {desc[0]}x{desc[1]}, frame 0 is {width}x{height}: "
                "every frame of a sequence must be the same size",
                BAD_IMAGE,
            )


def image_bytes(desc: Sequence[int]) -> int:
    """Bytes of an image with header (width, height, channels, depth)."""
    width, height, channels, depth = desc
    return width * height * channels * depth // 8


def error_fields(exc: BaseException, req: int | None = None, job_id: str | None = None) -> dict:
    """Header fields of an ``error`` reply for an exception."""
    code = getattr(exc, "code", None) or "internal"
    message = str(exc) or type(exc).__name__
    return {"req": req, "code": code, "message": message[:MAX_STRING], "job_id": job_id}
