"""The job driver both editor plug-ins share: settings -> options, submit, pump, frames.

Krita and GIMP differ only in how they read and write layers and how they show a
dialog; everything between "the artist pressed OK" and "here are the frames to insert"
lives here. It runs inside the editors' own Python, so it needs only the standard
library and the client (pyzmq + msgpack): no numpy, no Qt, no torch. Nothing here
blocks unless asked to: a GUI timer calls ``pump`` and reads the status fields.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from impasto.shared import errors
from impasto.shared.errors import ImpastoError
from impasto.shared.options import JobOptions, OptionsError
from impasto.shared.rawimage import RawImage

# What a dialog offers, under the CLI's option names. Editors start from this and
# persist whatever the artist changed. ``size`` None keeps the layer's own size.
DEFAULT_SETTINGS: dict[str, Any] = {
    "size": None,
    "quality": "standard",
    "iterations": None,
    "strength": "balanced",
    "style_weight": None,
    "content_weight": JobOptions.content_weight,
    "tv_weight": JobOptions.tv_weight,
    "style_blend": None,
    "preserve_colors": "none",
    "frames": 3,
    "seed": None,
    # host-side settings, not job options
    "placement": "group",  # "group": a layer group of frames; "animation": keyframes
    "confine": "mask",  # a selection limits frames by a transparency "mask" or baked "alpha"
    "endpoint": None,  # None = the default local daemon
}

# Settings the editors keep for themselves; options_from_settings passes over them.
HOST_SETTINGS = frozenset(
    {"placement", "confine", "endpoint", "styles", "timeout", "frame_delay_ms", "autostart"}
)

# Other spellings people (and the CLI's flags) use for an option.
SETTING_ALIASES = {
    "preset": "quality",
    "keep_frames": "frames",
    "blend": "style_blend",
    "preserve_colours": "preserve_colors",
}

GROUP_PREFIX = "Impasto – "

# What to tell the artist, per error code, after the error's own message.
ERROR_HINTS = {
    errors.DAEMON_UNAVAILABLE: "Start the Impasto daemon with `impasto daemon start` "
    "(or check the endpoint in the dialog's advanced settings), then try again.",
    errors.VERSION_MISMATCH: "The daemon and this plug-in speak different protocol "
    "versions: update both (`pip install -U impasto`, then `impasto install-plugin`) and "
    "restart the daemon with `impasto daemon stop` and `impasto daemon start`.",
    errors.IMAGE_TOO_LARGE: "Choose a smaller output size in the dialog, or stylise a "
    "selection instead of the whole layer.",
    errors.OUT_OF_MEMORY: "Choose a smaller output size or fewer style images.",
    errors.WEIGHTS_MISSING: "Install the model weights on the daemon's machine "
    "(see `impasto doctor`).",
    errors.TIMEOUT: "The daemon stopped answering; see its log (`impasto daemon status`).",
}


def describe_error(code: str, message: str) -> str:
    """One readable paragraph: what went wrong and what to do about it."""
    hint = ERROR_HINTS.get(code)
    text = message.strip() or code
    return f"{text}\n\n{hint}" if hint else text


# -- settings ---------------------------------------------------------------------------
_ORIGINAL_SIZE = ("0", "original", "full", "layer")
_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(JobOptions)}


def _coerce(name: str, value: Any) -> Any:
    """Turn a stored setting (often a string from a config file) into the field's type."""
    kind = _FIELD_TYPES[name]
    if name == "size" and str(value).strip().lower() in _ORIGINAL_SIZE:
        return None  # the CLI's "--size original": keep the layer's size
    if not isinstance(value, str):
        return value
    text = value.strip()
    if "None" in kind and text.lower() in ("", "none", "auto", "default"):
        return None
    try:
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
        if kind.startswith("list[float]"):
            return [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
        if kind.startswith("list[str]"):
            return [v.strip() for v in text.split(",") if v.strip()]
    except ValueError:
        raise ImpastoError(
            f"option '{name}': {value!r} is not a valid {kind.split(' ')[0]}",
            errors.BAD_OPTIONS,
        ) from None
    return text


def options_from_settings(settings: dict[str, Any] | None = None) -> JobOptions:
    """JobOptions from dialog settings (CLI names), over the plug-in defaults.

    Values may be strings as editors store them; host-only keys (placement, endpoint)
    are passed over; anything else unknown is an error naming the key.
    """
    merged: dict[str, Any] = {}
    for source in (DEFAULT_SETTINGS, settings or {}):
        for key, value in source.items():
            name = str(key).replace("-", "_")
            name = SETTING_ALIASES.get(name, name)
            if name in HOST_SETTINGS:
                continue
            if name not in _FIELD_TYPES:
                raise ImpastoError(f"option '{key}': unknown option", errors.BAD_OPTIONS)
            merged[name] = _coerce(name, value)
    try:
        return JobOptions.from_dict(merged)
    except OptionsError as exc:
        raise ImpastoError(str(exc), errors.BAD_OPTIONS) from None
    except TypeError as exc:  # a value of a type the dataclass cannot take
        raise ImpastoError(f"bad option value: {exc}", errors.BAD_OPTIONS) from None


# -- names ------------------------------------------------------------------------------
def style_display_name(style: str | PurePath) -> str:
    """ "starry_night" for "/x/starry_night.jpg"; a layer name stays as it is."""
    text = str(style)
    if "/" in text or "\\" in text or PurePath(text).suffix.lower() in _IMAGE_SUFFIXES:
        return PurePath(text).stem
    return text


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".kra", ".xcf"}


def group_layer_name(style_names: list[str] | str) -> str:
    """The group that holds one run's frames: "Impasto – starry_night + wave"."""
    names = [style_names] if isinstance(style_names, str) else list(style_names)
    return GROUP_PREFIX + " + ".join(names or ["style"])


def frame_layer_name(
    style_name: str,
    iteration: int,
    total: int,
    final: bool = False,
    delay_ms: int | None = None,
) -> str:
    """Consistent frame layer names; ``delay_ms`` adds GIMP's animation tag "(NNN ms)"."""
    if final:
        name = f"{style_name} – final ({iteration} iterations)"
    else:
        name = f"{style_name} – iteration {iteration}/{total}"
    if delay_ms is not None:
        name += f" ({int(delay_ms)} ms)"
    return name


# -- the job ----------------------------------------------------------------------------
@dataclass
class JobFrame:
    """One image to insert as a layer: a progress frame or (last) the final image."""

    label: str
    iteration: int
    image: RawImage
    final: bool = False


class HostJob:
    """Drives one job through a ``Client`` without ever blocking the caller.

    ``start`` submits; ``pump`` (from a GUI timer) reads the daemon's events and keeps
    ``status_text``, ``fraction`` and ``eta`` current; ``frames`` grows as progress
    frames arrive and ends with the final image. Errors land in ``error`` (an
    ``ImpastoError``) and ``error_text`` (with advice), never as exceptions from pump.
    """

    def __init__(
        self,
        client: Any,
        content: RawImage,
        styles: list[RawImage],
        options: JobOptions,
        style_name: str = "style",
        init_image: RawImage | None = None,
        cancel_grace: float = 10.0,
    ):
        if not styles:
            raise ImpastoError("choose at least one style image", errors.BAD_OPTIONS)
        self.client = client
        self.content = content
        self.styles = list(styles)
        self.options = options
        self.style_name = style_name
        self.init_image = init_image
        self.cancel_grace = cancel_grace
        self.job_id: str | None = None
        self.frames: list[JobFrame] = []
        self.result: Any = None  # the client's Result event
        self.error: ImpastoError | None = None
        self.done = False
        self.cancelled = False
        self.cancel_requested = False
        self.status_text = "Not started"
        self.fraction = 0.0
        self.eta: float | None = None
        self.iteration = 0
        self.total = options.total_iterations()
        self.losses: dict[str, float] = {}
        self.started_at: float | None = None
        self._cancel_at: float | None = None

    # -- control ------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.started_at is not None and not self.done

    @property
    def error_text(self) -> str | None:
        if self.error is None:
            return None
        return describe_error(self.error.code, self.error.message)

    def start(self) -> None:
        """Submit the job; errors (e.g. no daemon) end the job at once with ``error``."""
        if self.started_at is not None:
            return
        self.started_at = time.monotonic()
        self.status_text = "Sending the image to the daemon…"
        try:
            if not getattr(self.client, "connected", True):
                check_listening(getattr(self.client, "endpoint", ""))
            self.job_id = self.client.submit(
                self.content, self.styles, self.options, init_image=self.init_image
            )
        except ImpastoError as exc:
            self._fail(exc)
            return
        self.status_text = "Waiting for the daemon…"

    def cancel(self) -> None:
        """Ask the daemon to stop; the frames so far stay, the best image becomes final."""
        if self.done:
            return
        self.cancel_requested = True
        self._cancel_at = time.monotonic()
        self.status_text = "Cancelling…"
        if self.job_id is None:
            self._finish_cancelled()
            return
        try:
            self.client.cancel(self.job_id)
        except ImpastoError:
            self._finish_cancelled()

    def pump(self, timeout: float = 0.0) -> bool:
        """Handle whatever events have arrived; True while the job is still running."""
        if self.done:
            return False
        if self.started_at is None:
            self.start()
            if self.done:
                return False
        try:
            events = self.client.poll(timeout)
        except ImpastoError as exc:
            self._fail(exc)
            return False
        for event in events:
            if getattr(event, "job_id", self.job_id) != self.job_id:
                continue
            self._handle(event)
            if self.done:
                break
        if (
            not self.done
            and self._cancel_at is not None
            and time.monotonic() - self._cancel_at > self.cancel_grace
        ):
            self._finish_cancelled()  # the daemon never confirmed: keep what we have
        return not self.done

    def run_blocking(self, timeout: float | None = None, on_update: Any = None) -> list[JobFrame]:
        """Run to the end (for scripts and tests); raises ImpastoError on failure."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.start()
        while self.pump(0.1):
            if on_update is not None:
                on_update(self)
            if deadline is not None and time.monotonic() > deadline and not self.cancel_requested:
                self.cancel()
                while self.pump(0.1):
                    pass
                raise ImpastoError(f"the job took longer than {timeout:g} s", errors.TIMEOUT)
        if on_update is not None:
            on_update(self)
        if self.error is not None:
            raise self.error
        return self.frames

    # -- events -------------------------------------------------------------------
    def _handle(self, event: Any) -> None:
        kind = type(event).__name__
        if kind == "Accepted":
            position = getattr(event, "position", 0) or 0
            self.status_text = (
                f"Queued behind {position} other job{'s' if position != 1 else ''}…"
                if position
                else "Starting…"
            )
        elif kind == "Progress":
            self._on_progress(event)
        elif kind == "Result":
            self._on_result(event)
        elif kind == "Failed":
            code = getattr(event, "code", errors.INTERNAL)
            if code == errors.CANCELLED:
                self._finish_cancelled()
            else:
                self._fail(ImpastoError(getattr(event, "message", "") or code, code))

    def _on_progress(self, event: Any) -> None:
        self.iteration = int(event.iteration)
        self.total = int(event.total) or self.total
        self.fraction = min(1.0, self.iteration / max(1, self.total))
        self.eta = getattr(event, "eta", None)
        self.losses = dict(getattr(event, "losses", None) or {})
        scale = getattr(event, "scale", 1)
        n_scales = getattr(event, "n_scales", 1)
        text = f"Iteration {self.iteration}/{self.total}"
        if n_scales and n_scales > 1:
            text += f" · scale {scale}/{n_scales}"
        if self.eta is not None and not self.cancel_requested:
            text += f" · {format_eta(self.eta)} left"
        self.status_text = "Cancelling… " + text if self.cancel_requested else text
        frame = getattr(event, "frame", None)
        if frame is not None:
            self._keep(JobFrame(self._label(self.iteration, False), self.iteration, frame))

    def _on_result(self, event: Any) -> None:
        self.result = event
        iterations = int(getattr(event, "iterations", self.iteration) or self.iteration)
        self.cancelled = bool(getattr(event, "cancelled", False))
        if self.frames and self.frames[-1].iteration >= iterations:
            self.frames.pop()  # the last progress frame is the final image itself
        label = self._label(iterations, True)
        if self.cancelled:
            label = f"{self.style_name} – cancelled at {iterations}/{self.total}"
        self._keep(JobFrame(label, iterations, event.image, final=True))
        self.iteration = iterations
        self.fraction = 1.0 if not self.cancelled else self.fraction
        self.eta = 0.0
        elapsed = getattr(event, "elapsed", None)
        took = f" in {elapsed:.1f} s" if isinstance(elapsed, int | float) else ""
        self.status_text = (
            f"Cancelled at iteration {iterations}; kept {len(self.frames)} frames"
            if self.cancelled
            else f"Done: {iterations} iterations{took}"
        )
        self.done = True

    def _keep(self, frame: JobFrame) -> None:
        image = frame.image
        if not isinstance(image.data, bytes):  # the client hands out zero-copy views
            frame.image = RawImage(
                image.width, image.height, image.channels, image.depth, bytes(image.data)
            )
        self.frames.append(frame)

    def _label(self, iteration: int, final: bool) -> str:
        return frame_layer_name(self.style_name, iteration, self.total, final=final)

    def _finish_cancelled(self) -> None:
        self.cancelled = True
        self.done = True
        self.status_text = f"Cancelled; kept {len(self.frames)} frames"

    def _fail(self, exc: ImpastoError) -> None:
        self.error = exc
        self.done = True
        self.status_text = "Failed: " + exc.message


def restore_alpha(image: RawImage, source: RawImage) -> RawImage:
    """``image`` with the exact alpha of ``source`` (same size): frames come back from a
    smaller working size and resampling blurs the layer's own transparency."""
    if not source.has_alpha:
        return image
    if (image.width, image.height) != (source.width, source.height):
        raise ImpastoError("restore_alpha needs images of the same size", errors.BAD_IMAGE)
    rgba = image.with_alpha()
    alpha = source.to_depth(rgba.depth).data
    n = rgba.bytes_per_sample
    out = bytearray(rgba.data)
    for lane in range(n):
        out[3 * n + lane :: 4 * n] = alpha[3 * n + lane :: 4 * n]
    return RawImage(rgba.width, rgba.height, 4, rgba.depth, bytes(out))


def check_listening(endpoint: str, timeout: float = 0.5) -> None:
    """Fail fast (instead of freezing a GUI for the client's timeout) when nothing
    listens on a local TCP endpoint; other endpoints are left to the client."""
    if not endpoint.startswith("tcp://"):
        return
    host, _, port = endpoint[len("tcp://") :].rpartition(":")
    host = host.strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1") or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError:
        raise ImpastoError(
            f"no Impasto daemon is running at {endpoint}", errors.DAEMON_UNAVAILABLE
        ) from None


def format_eta(seconds: float | None) -> str:
    """ "0:42" / "1:02:03" for a status line; "?" when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    secs = round(seconds)
    hours, rest = divmod(secs, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
