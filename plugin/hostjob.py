"""The job driver both editor plug-ins share: settings -> options, submit, pump, frames.

Krita and GIMP differ only in how they read and write layers and how they show a
dialog; everything between "the artist pressed OK" and "here are the frames to insert"
lives here, and so does the policy both follow: what "frames" means, the size a region
is sent at, the names of results (unique, "#2"), where a new result stacks, starting a
local daemon, and the connection state a dialog shows. It runs inside the editors' own
Python, so it needs only the standard library and the client (pyzmq + msgpack): no
numpy, no Qt, no torch. Nothing here blocks unless asked to: a GUI timer calls ``pump``
and reads the status fields.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from impasto.plugin import daemonctl
from impasto.plugin.client import Accepted, Event, Failed, FrameDone, Progress, Result
from impasto.shared import errors, paths
from impasto.shared.errors import ImpastoError
from impasto.shared.options import DEFAULT_MAX_PIXELS, JobOptions, OptionsError
from impasto.shared.rawimage import RawImage
from impasto.shared.sequence import SequenceOptions

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
    "stroke_scale": "auto",
    "frames": 3,  # progress layers besides the final image
    "seed": None,
    # host-side settings, not job options
    "placement": "group",  # "group": a layer group of frames; "animation": keyframes
    "confine": "mask",  # a selection limits frames by a transparency "mask" or baked "alpha"
    "endpoint": None,  # None = the default local daemon
    "autostart": True,  # start a local daemon when none answers (never a remote one)
}

# Settings the editors keep for themselves; options_from_settings passes over them.
HOST_SETTINGS = frozenset(
    {"placement", "confine", "endpoint", "styles", "timeout", "frame_delay_ms", "autostart"}
)

# What the dialogs' stroke-scale control says it does (the engine's coarse-to-fine start).
STROKE_SCALE_TOOLTIP = (
    "How big the brush strokes come out. fine: optimise at the output size only (keeps "
    "the layout, small strokes); medium: start at half the size; large: start at 128 px "
    "(big, loose strokes; the layout may melt); auto: one scale up to 1024 px unless its "
    "first iterations barely move the style (then from half the size), a coarse-to-fine "
    "start above. A coarser start gives bigger strokes."
)

# Settings of an animation run (SequenceOptions); a still run passes over them.
SEQUENCE_SETTINGS = frozenset(f.name for f in dataclasses.fields(SequenceOptions))

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
    errors.DAEMON_UNAVAILABLE: "The plug-in starts a local daemon by itself once "
    "`impasto install-plugin` has recorded how; otherwise start it with "
    "`impasto daemon start`. For a daemon on another machine, check the endpoint "
    "under Advanced in the dialog, then try again.",
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


# The engine's ceiling on frames (JobOptions.validate), the final image included.
MAX_ENGINE_FRAMES = 1000
MAX_PROGRESS_FRAMES = MAX_ENGINE_FRAMES - 1


# -- settings ---------------------------------------------------------------------------
_ORIGINAL_SIZE = ("0", "original", "full", "layer")
_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(JobOptions)}
_SEQUENCE_TYPES = {f.name: str(f.type) for f in dataclasses.fields(SequenceOptions)}
_BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "1": True}
_BOOLEAN_WORDS |= {"false": False, "no": False, "off": False, "0": False}


def _coerce(name: str, value: Any, types: dict[str, str] = _FIELD_TYPES) -> Any:
    """Turn a stored setting (often a string from a config file) into the field's type."""
    kind = types[name]
    if name == "size" and str(value).strip().lower() in _ORIGINAL_SIZE:
        return None  # the CLI's "--size original": keep the layer's size
    if not isinstance(value, str):
        return value
    text = value.strip()
    if "None" in kind and text.lower() in ("", "none", "auto", "default"):
        return None
    if kind == "bool" and text.lower() in _BOOLEAN_WORDS:
        return _BOOLEAN_WORDS[text.lower()]
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
    are passed over; anything else unknown is an error naming the key. The dialogs'
    ``frames`` counts progress layers besides the final image; the engine's counts
    every image it sends, the last being the final one, hence one more.
    """
    merged: dict[str, Any] = {}
    for source in (DEFAULT_SETTINGS, settings or {}):
        for key, value in source.items():
            name = str(key).replace("-", "_")
            name = SETTING_ALIASES.get(name, name)
            if name in HOST_SETTINGS or name in SEQUENCE_SETTINGS:
                continue
            if name not in _FIELD_TYPES:
                raise ImpastoError(f"option '{key}': unknown option", errors.BAD_OPTIONS)
            merged[name] = _coerce(name, value)
    frames = merged.get("frames")
    if isinstance(frames, int) and not isinstance(frames, bool) and frames > 0:
        merged["frames"] = min(frames + 1, MAX_ENGINE_FRAMES)
    try:
        return JobOptions.from_dict(merged)
    except OptionsError as exc:
        raise ImpastoError(str(exc), errors.BAD_OPTIONS) from None
    except TypeError as exc:  # a value of a type the dataclass cannot take
        raise ImpastoError(f"bad option value: {exc}", errors.BAD_OPTIONS) from None


def sequence_options_from_settings(settings: dict[str, Any] | None = None) -> SequenceOptions:
    """SequenceOptions from the animation settings among ``settings`` (temporal_weight,
    warm_iterations, flow, independent; "-" or "_" spelt); the others are passed over."""
    picked = {}
    for key, value in (settings or {}).items():
        name = str(key).replace("-", "_")
        if name in SEQUENCE_SETTINGS:
            picked[name] = _coerce(name, value, _SEQUENCE_TYPES)
    try:
        return SequenceOptions.from_dict(picked)
    except OptionsError as exc:
        raise ImpastoError(str(exc), errors.BAD_OPTIONS) from None


# -- names ------------------------------------------------------------------------------
def style_display_name(style: str | PurePath) -> str:
    """ "starry_night" for "/x/starry_night.jpg"; a layer name stays as it is."""
    text = str(style)
    if "/" in text or "\\" in text or PurePath(text).suffix.lower() in _IMAGE_SUFFIXES:
        return PurePath(text).stem
    return text


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".kra", ".xcf"}


def styles_label(styles: Sequence[str | PurePath] | str) -> str:
    """One run's style name from its style files or layers: "starry_night + wave"."""
    names = [styles] if isinstance(styles, str | PurePath) else list(styles)
    return " + ".join(style_display_name(s) for s in names) or "style"


def group_layer_name(style_names: list[str] | str) -> str:
    """The group (or animated layer) holding one run's frames: "Impasto – starry_night"."""
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


# A frame layer as frame_layer_name (or a cancelled run) writes it, with the "#2" an
# editor or unique_name may add.
_FRAME_NAME = re.compile(
    r" – (iteration \d+/\d+|final \(\d+ iterations\)|cancelled at \d+/\d+)"
    r"( \(\d+ ms\))?( #\d+)?$"
)


def is_result_name(name: str) -> bool:
    """True for the layers Impasto makes: its groups, animated layers and frame layers.

    The dialogs leave these out of the style list, and a new run stacks above them."""
    return name.startswith(GROUP_PREFIX) or _FRAME_NAME.search(name) is not None


def unique_name(name: str, taken: set[str] | list[str]) -> str:
    """``name``, or ``name #2``, ``#3``… when the document already has it."""
    taken = set(taken)
    if name not in taken:
        return name
    number = 2
    while f"{name} #{number}" in taken:
        number += 1
    return f"{name} #{number}"


def insert_index(siblings_bottom_up: list[str], source_index: int) -> int:
    """Index of the sibling a new result goes directly above.

    The source itself, or the topmost of the Impasto results stacked directly on it:
    a new run lands on top of the earlier ones (so it is what the artist sees) yet
    stays below whatever the artist keeps above the source (line art, a signature),
    which the top of the stack would cover."""
    index = source_index
    while index + 1 < len(siblings_bottom_up) and is_result_name(siblings_bottom_up[index + 1]):
        index += 1
    return index


# -- preview, then refine ---------------------------------------------------------------
REFINED_SUFFIX = " (refined)"  # on a refine's style name: its layers say what they are
_FINAL_NAME = re.compile(r" – final \(\d+ iterations\)( \(\d+ ms\))?( #\d+)?$")


def refinement_options(preview: JobOptions, iterations: int | None = None) -> JobOptions:
    """What refining a preview runs: the preview's settings at the layer's own size,
    from the preview's picture (``init_image``), one scale (the layout is there)."""
    return preview.refinement(size=None, iterations=iterations)


def is_final_name(name: str) -> bool:
    """True for a run's final-image layer (the picture a refine starts from)."""
    return _FINAL_NAME.search(name) is not None


def newest_result(siblings_bottom_up: list[str], source_index: int) -> int | None:
    """Index of the newest Impasto result stacked directly on the source (the preview
    "Refine the previous preview" starts from), or None when there is none."""
    index = insert_index(siblings_bottom_up, source_index)
    return None if index == source_index else index


# -- the part of a layer being stylised -------------------------------------------------
@dataclass
class Region:
    """The stylised part of a layer, in image coordinates; ``masked`` when a selection
    limits it (the frames then get the selection as a mask or alpha)."""

    x: int
    y: int
    width: int
    height: int
    masked: bool = False


@dataclass
class ContentSource:
    """A layer region not read yet: its size and how to read it at a smaller size.

    The job reads it once it knows the daemon's pixel limit, so a size-capped run
    never reads or sends more pixels than the daemon will use."""

    width: int
    height: int
    read: Callable[[int, int], RawImage]


def work_size(width: int, height: int, size: int | None, max_pixels: int) -> tuple[int, int]:
    """The size a region is sent at: its long edge capped at ``size``, never enlarged;
    an ImpastoError (image_too_large) if that is more than the daemon accepts."""
    long_edge = max(width, height)
    if size is not None and size < long_edge:
        scale = size / long_edge
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if width * height > max_pixels:
        raise ImpastoError(
            f"the layer region is {width}x{height} = {width * height:,} pixels, over the "
            f"limit of {max_pixels:,} pixels the daemon accepts",
            errors.IMAGE_TOO_LARGE,
        )
    return width, height


def region_options(options: JobOptions, width: int, height: int) -> JobOptions:
    """The options a job on a ``width`` x ``height`` region runs with: a size at or
    above the region's long edge keeps the region's own size (never enlarged)."""
    if options.size is not None and options.size >= max(width, height):
        return options.replace(size=None)
    return options


# -- the daemon connection -------------------------------------------------------------
# What a dialog shows about its daemon.
CHECKING = "checking"
CONNECTED = "connected"
STARTING = "starting"
UNREACHABLE = "not reachable"
MISMATCH = "version mismatch"
_STATE_OF_ERROR = {errors.DAEMON_UNAVAILABLE: UNREACHABLE, errors.VERSION_MISMATCH: MISMATCH}


def daemon_listening(endpoint: str, timeout: float = 0.5) -> bool | None:
    """Whether something listens on a local endpoint (a refused TCP connection answers
    at once, where a ZeroMQ request would wait for its timeout); None for a remote one."""
    if not paths.is_loopback(endpoint):
        return None
    scheme, _, rest = endpoint.partition("://")
    if scheme == "ipc":
        return os.path.exists(rest)
    if scheme != "tcp":
        return None
    host, _, port = rest.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def probe_daemon(endpoint: str | None = None, timeout: float = 2.0) -> tuple[str, str]:
    """(state, detail) of the daemon at ``endpoint``: blocks up to ``timeout``, so a
    dialog calls it through ``ConnectionWatch``."""
    from impasto.plugin.client import Client

    endpoint = endpoint or paths.default_endpoint()
    if daemon_listening(endpoint) is False:
        return UNREACHABLE, f"no daemon at {endpoint}"
    client = Client(endpoint, timeout=timeout, name="impasto-probe")
    try:
        info = client.connect()
    except ImpastoError as exc:
        return _STATE_OF_ERROR.get(exc.code, UNREACHABLE), exc.message
    finally:
        client.close()
    return CONNECTED, f"Impasto {info.get('daemon', '?')} at {endpoint}"


class ConnectionWatch:
    """The daemon's state for a dialog, checked in a thread so the UI never waits."""

    def __init__(self, timeout: float = 2.0):
        self.timeout = timeout
        self.state = CHECKING
        self.detail = ""
        self.endpoint: str | None = None
        self._thread: threading.Thread | None = None

    def check(self, endpoint: str | None = None) -> None:
        """Start a check (unless one is under way for the same endpoint)."""
        endpoint = endpoint or paths.default_endpoint()
        busy = self._thread is not None and self._thread.is_alive()
        if busy and endpoint == self.endpoint:
            return
        if endpoint != self.endpoint:
            self.state, self.detail = CHECKING, f"checking {endpoint}…"
        self.endpoint = endpoint
        self._thread = threading.Thread(target=self._run, args=(endpoint,), daemon=True)
        self._thread.start()

    def _run(self, endpoint: str) -> None:
        try:
            state, detail = probe_daemon(endpoint, self.timeout)
        except (ValueError, ImpastoError) as exc:  # a malformed endpoint
            state, detail = UNREACHABLE, str(exc)
        if endpoint == self.endpoint:
            self.state, self.detail = state, detail


# -- the estimate before a run -----------------------------------------------------------
ESTIMATE_DELAY_S = 0.4  # a dialog asks once its settings have been still this long
# A dialog with no connection line of its own (GIMP's) asks again this long after a
# "no daemon" answer, so a daemon started meanwhile shows; one request per retry.
ESTIMATE_RETRY_S = 3.0
_FITS = re.compile(r"ask for (\d+) px or less")
GIB = 1024**3
NO_DAEMON_TEXT = "Time estimate: once the daemon answers"


def sequence_seconds(info: dict[str, Any], n_frames: int, sequence: SequenceOptions) -> float:
    """Seconds for an animation of ``n_frames`` from a still's estimate (``info``): the
    first frame as that still, each later one ``warm_budget`` iterations at the output
    size only (daemon/engine/sequence.py), at the still plan's seconds per
    pixel-iteration; independent frames are each a still."""
    still = float(info.get("seconds") or 0.0)
    later = max(0, n_frames - 1)
    if sequence.independent or not later:
        return still * max(1, n_frames)
    scales = info.get("scales") or []
    pixel_iterations = sum(
        int(s.get("width", 0)) * int(s.get("height", 0)) * int(s.get("iterations", 0))
        for s in scales
    )
    if pixel_iterations <= 0:
        return still * n_frames
    first_total = sum(int(s.get("iterations", 0)) for s in scales)
    out_pixels = int(info.get("width", 0)) * int(info.get("height", 0))
    warm = out_pixels * sequence.warm_budget(first_total)
    return still + later * warm * still / pixel_iterations


def estimate_text(
    info: dict[str, Any], n_frames: int = 1, sequence: SequenceOptions | None = None
) -> str:
    """The dialog's line for an estimate (``Client.estimate``'s reply):
    "About 2:10 · 1024×768 px · peak 1.4 GB of 3.0 GB"; for an animation of
    ``n_frames`` (``sequence`` set) "4 frames · about 3:10 · …"."""
    if sequence is not None and n_frames > 1:
        seconds = sequence_seconds(info, n_frames, sequence)
        about = f"{n_frames} frames · about {format_eta(seconds)}"
    else:
        about = f"About {format_eta(info.get('seconds'))}"
    if not info.get("speed_measured"):
        about += " (first run: rough estimate)"
    parts = [about, f"{info.get('width', '?')}×{info.get('height', '?')} px"]
    peak, budget = info.get("memory_estimate"), info.get("memory_budget")
    if isinstance(peak, int | float) and isinstance(budget, int | float):
        parts.append(f"peak {peak / GIB:.1f} GB of {budget / GIB:.1f} GB")
    if any(scale.get("tile") for scale in info.get("scales") or []):
        parts.append("in tiles")
    return " · ".join(parts)


def estimate_error_text(exc: ImpastoError) -> str:
    """The dialog's line when the daemon refuses the planned job (before any run)."""
    if exc.code == errors.TOO_LARGE_FOR_DEVICE:
        fits = _FITS.search(exc.message)
        advice = f"ask for {fits.group(1)} px or less" if fits else "choose a smaller size"
        return f"Too large for this machine: {advice}"
    if exc.code == errors.IMAGE_TOO_LARGE:
        return "Too large for the daemon: choose a smaller output size"
    if exc.code == errors.DAEMON_UNAVAILABLE:
        return NO_DAEMON_TEXT
    return f"No estimate: {exc.message.splitlines()[0]}"


def ask_estimate(
    endpoint: str | None,
    width: int,
    height: int,
    options: JobOptions,
    n_styles: int = 1,
    n_frames: int = 1,
    sequence: SequenceOptions | None = None,
    timeout: float = 5.0,
) -> str:
    """The estimate line for a region of ``width`` x ``height`` (an animation of
    ``n_frames`` when ``sequence`` is set): asks the daemon (never starts one), so it
    blocks; a dialog calls it through ``EstimateWatch``."""
    from impasto.plugin.client import Client

    endpoint = endpoint or paths.default_endpoint()
    if daemon_listening(endpoint) is False:
        return NO_DAEMON_TEXT
    client = Client(endpoint, timeout=timeout, name="impasto-estimate")
    try:
        info = client.estimate(
            width, height, region_options(options, width, height), max(1, n_styles)
        )
    except ImpastoError as exc:
        return estimate_error_text(exc)
    finally:
        client.close()
    return estimate_text(info, n_frames, sequence)


class EstimateWatch:
    """The estimate line for a dialog, asked in a thread so the UI never waits.

    A dialog calls ``request`` on every change of size or settings and shows ``text``
    from a timer; the thread asks once the requests have been still for ``delay``
    seconds, and only for the newest, so typing a size costs one request, not ten.
    An answer is reused for the same settings, except "no daemon": the next request
    (a settings change, the daemon connecting, ``retry``) asks again. ``fresh`` asks
    again even for a real answer (after a run the daemon knows its speed).
    """

    def __init__(self, delay: float = ESTIMATE_DELAY_S, ask: Callable[..., str] = ask_estimate):
        self.delay = delay
        self.ask = ask
        self.text = ""
        # (endpoint, width, height, options, n_styles, n_frames, sequence)
        self._wanted: tuple | None = None
        self._answered: tuple | None = None  # the settings of _answer, while reusable
        self._answer = ""
        self._answered_at = 0.0
        self._changed = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """True while an answer for the newest request is still to come."""
        with self._lock:
            return self._thread is not None

    @property
    def waiting_for_daemon(self) -> bool:
        """True when the line says no daemon answered (``retry`` then asks again)."""
        return self.text == NO_DAEMON_TEXT

    def request(
        self,
        endpoint: str | None,
        width: int,
        height: int,
        options: JobOptions | ImpastoError,
        n_styles: int = 1,
        n_frames: int = 1,
        sequence: SequenceOptions | None = None,
        fresh: bool = False,
    ) -> None:
        """Ask for the estimate of these settings (an ImpastoError: settings that do
        not make a job, shown at once); ``fresh``: even when they were answered."""
        if isinstance(options, ImpastoError):
            with self._lock:
                self._wanted = self._answered = None
                self.text = estimate_error_text(options)
            return
        wanted = (endpoint, width, height, options, n_styles, n_frames, sequence)
        with self._lock:
            if fresh:
                self._answered = None
            if wanted == self._answered:  # back to what was answered last
                self._wanted, self.text = wanted, self._answer
                return
            if wanted == self._wanted and self._thread is not None:
                return  # on its way
            self._ask_later(wanted)

    def retry(self, after: float = ESTIMATE_RETRY_S) -> None:
        """Ask again for the newest settings when the answer was "no daemon", at least
        ``after`` seconds ago: for a dialog's timer, at most one request per ``after``."""
        with self._lock:
            wanted = self._wanted
            if wanted is None or self._thread is not None or self.text != NO_DAEMON_TEXT:
                return
            if time.monotonic() - self._answered_at < after:
                return
            self._ask_later(wanted)

    def _ask_later(self, wanted: tuple) -> None:
        """(Under the lock.) Make ``wanted`` the newest request; the thread asks."""
        self._wanted, self._changed = wanted, time.monotonic()
        self.text = "Estimating…"
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        asked: tuple | None = None
        while True:
            with self._lock:
                wanted, wait = self._wanted, self.delay - (time.monotonic() - self._changed)
                if wait <= 0 and (wanted is None or wanted == asked):
                    self._thread = None
                    return
            if wait > 0:
                time.sleep(wait)
                continue
            assert wanted is not None
            try:
                text = self.ask(*wanted)
            except Exception as exc:  # a malformed endpoint, a bug: say so, keep the dialog
                text = f"No estimate: {exc}"
            asked = wanted
            with self._lock:
                # "no daemon" is not kept: the next request for these settings asks again
                self._answered = wanted if text != NO_DAEMON_TEXT else None
                self._answer, self._answered_at = text, time.monotonic()
                if wanted == self._wanted:
                    self.text = text


# -- the job ----------------------------------------------------------------------------
@dataclass
class JobFrame:
    """One image to insert as a layer: a progress frame or (last) the final image; in an
    animation run, one finished frame and ``key``, the source frame it stylises."""

    label: str
    iteration: int
    image: RawImage
    final: bool = False
    key: Any = None


class HostJob:
    """Drives one job through a ``Client`` without ever blocking the caller.

    ``start`` connects (starting a local daemon first when none answers and
    ``autostart`` allows it) and submits; ``pump`` (from a GUI timer) reads the daemon's
    events and keeps ``status_text``, ``fraction``, ``eta`` and ``connection`` current;
    ``frames`` grows as progress frames arrive and ends with the final image. Errors
    land in ``error`` (an ``ImpastoError``) and ``error_text`` (with advice), never as
    exceptions from pump.
    """

    def __init__(
        self,
        client: Any,
        content: RawImage | ContentSource,
        styles: list[RawImage],
        options: JobOptions,
        style_name: str = "style",
        init_image: RawImage | None = None,
        cancel_grace: float = 10.0,
        autostart: bool = True,
        python: str | None = None,
        start_timeout: float = daemonctl.START_TIMEOUT,
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
        self.autostart = autostart
        self.python = python
        self.start_timeout = start_timeout
        self.job_id: str | None = None
        self.frames: list[JobFrame] = []
        self.result: Result | None = None
        self.error: ImpastoError | None = None
        self.done = False
        self.cancelled = False
        self.cancel_requested = False
        self.connection = CHECKING
        self.daemon_started = False  # this job started the daemon
        self.status_text = "Not started"
        self.fraction = 0.0
        self.eta: float | None = None
        self.iteration = 0
        self.total = options.total_iterations()
        self.losses: dict[str, float] = {}
        self.started_at: float | None = None
        self._cancel_at: float | None = None
        self._launch: Any = None  # the daemon process this job started, until it answers
        self._launch_deadline = 0.0
        self._model_loading = False

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
        """Connect and submit, or start a local daemon first; errors end the job at once."""
        if self.started_at is not None:
            return
        self.started_at = time.monotonic()
        endpoint = self.client.endpoint
        if not self.client.connected and daemon_listening(endpoint) is False:
            if not self.autostart:
                self._fail(
                    ImpastoError(
                        f"no Impasto daemon is running at {endpoint}", errors.DAEMON_UNAVAILABLE
                    )
                )
                return
            try:
                self._launch = daemonctl.launch(endpoint, python=self.python)
            except ImpastoError as exc:
                message = f"no Impasto daemon is running at {endpoint}, and {exc.message}"
                self._fail(ImpastoError(message, exc.code))
                return
            self.daemon_started = True
            self._launch_deadline = time.monotonic() + self.start_timeout
            self.connection = STARTING
            self.status_text = "Starting the daemon… loading the model"
            return
        self._submit()

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
        if self._launch is not None:
            self._await_daemon(timeout)
            return not self.done
        try:
            events = self.client.poll(timeout)
        except ImpastoError as exc:
            self._fail(exc)
            return False
        for event in events:
            if event.job_id != self.job_id:
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

    @property
    def can_refine(self) -> bool:
        """A finished preview, made smaller than the layer, that ``refinement`` can
        render again at the layer's own size."""
        return (
            self.done
            and self.error is None
            and bool(self.frames)
            and self.frames[-1].final
            and self.options.size is not None
        )

    def refinement(self, client: Any, iterations: int | None = None) -> HostJob:
        """A job that renders this preview again at the layer's own size, starting from
        the preview's final picture (the engine upscales it): the artist iterates on
        cheap small previews and pays for the full size once. ``client`` is a fresh
        one (the preview's is usually closed by now)."""
        if not self.can_refine:
            raise ImpastoError(
                "there is no finished preview smaller than the layer to refine",
                errors.BAD_OPTIONS,
            )
        return HostJob(
            client,
            self.content,
            self.styles,
            refinement_options(self.options, iterations),
            style_name=self.style_name + REFINED_SUFFIX,
            init_image=self.frames[-1].image,
            cancel_grace=self.cancel_grace,
            autostart=self.autostart,
            python=self.python,
            start_timeout=self.start_timeout,
        )

    def run_blocking(
        self, timeout: float | None = None, on_update: Callable[[HostJob], Any] | None = None
    ) -> list[JobFrame]:
        """Run to the end, calling ``on_update(job)`` about ten times a second (a GUI
        keeps its event loop turning there). Past ``timeout`` the job is cancelled and
        keeps its frames so far. Raises ImpastoError on failure."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.start()
        while self.pump(0.1):
            if on_update is not None:
                on_update(self)
            if deadline is not None and time.monotonic() > deadline and not self.cancel_requested:
                self.cancel()
        if on_update is not None:
            on_update(self)
        if self.error is not None:
            raise self.error
        return self.frames

    # -- connecting -----------------------------------------------------------------
    def _await_daemon(self, timeout: float) -> None:
        """One look at the daemon this job started: answering, dead, or still loading."""
        endpoint = self.client.endpoint
        if daemon_listening(endpoint):
            self._launch = None
            self._submit()
            return
        failure = daemonctl.launch_failure(self._launch, endpoint)
        if failure is not None:
            self._fail(failure)
        elif time.monotonic() > self._launch_deadline:
            self._fail(
                ImpastoError(
                    f"the Impasto daemon started (pid {self._launch.pid}) but did not answer "
                    f"on {endpoint} within {self.start_timeout:g} s; see "
                    f"{paths.log_file(endpoint)}",
                    errors.TIMEOUT,
                )
            )
        elif self.cancel_requested:
            self._finish_cancelled()
        else:
            time.sleep(min(timeout, 0.1))

    def _submit(self) -> None:
        self.status_text = "Sending the image to the daemon…"
        try:
            self.client.connect()
            self.connection = CONNECTED
            info = self.client.status()
            self._model_loading = not info.get("model_loaded", True)
            self.job_id = self._send(int(info.get("max_pixels") or DEFAULT_MAX_PIXELS))
        except ImpastoError as exc:
            self._fail(exc)
            return
        self.status_text = self._waiting_text()

    def _send(self, max_pixels: int) -> str:
        """Read what the job needs at the size it works at and submit it; the job id."""
        content = self._read_content(self.content, max_pixels)
        return self.client.submit(content, self.styles, self.options, init_image=self.init_image)

    def _read_content(self, source: RawImage | ContentSource, max_pixels: int) -> RawImage:
        """The content at the size the job works at, checked against the daemon's limit."""
        width, height = work_size(source.width, source.height, self.options.size, max_pixels)
        self.options = region_options(self.options, source.width, source.height)
        if isinstance(source, ContentSource):
            source = source.read(width, height)  # already at the size the job works at
        return source

    def _waiting_text(self) -> str:
        if self._model_loading:
            return "Daemon started; loading the model…"
        return "Waiting for the daemon…"

    # -- events -------------------------------------------------------------------
    def _handle(self, event: Event) -> None:
        if isinstance(event, Accepted):
            position = event.position or 0
            self.status_text = (
                f"Queued behind {position} other job{'s' if position != 1 else ''}…"
                if position
                else self._waiting_text()
            )
        elif isinstance(event, Progress):
            self._model_loading = False
            self._on_progress(event)
        elif isinstance(event, Result):
            self._on_result(event)
        elif isinstance(event, Failed):
            if event.code == errors.CANCELLED:
                self._finish_cancelled()
            else:
                self._fail(ImpastoError(event.message or event.code, event.code))

    def _on_progress(self, event: Progress) -> None:
        self.iteration = int(event.iteration)
        self.total = int(event.total) or self.total
        self.fraction = min(1.0, self.iteration / max(1, self.total))
        self.eta = event.eta
        self.losses = dict(event.losses or {})
        text = f"Iteration {self.iteration}/{self.total}"
        if event.n_scales and event.n_scales > 1:
            text += f" · scale {event.scale}/{event.n_scales}"
        if self.eta is not None and not self.cancel_requested:
            text += f" · {format_eta(self.eta)} left"
        self.status_text = "Cancelling… " + text if self.cancel_requested else text
        if event.frame is not None:
            self._keep(JobFrame(self._label(self.iteration, False), self.iteration, event.frame))

    def _on_result(self, event: Result) -> None:
        self.result = event
        iterations = int(event.iterations or self.iteration)
        self.cancelled = bool(event.cancelled)
        if self.frames and self.frames[-1].iteration >= iterations:
            self.frames.pop()  # the last progress frame is the final image itself
        label = self._label(iterations, True)
        if self.cancelled:
            label = f"{self.style_name} – cancelled at {iterations}/{self.total}"
        self._keep(JobFrame(label, iterations, event.image, final=True))
        self.iteration = iterations
        self.fraction = 1.0 if not self.cancelled else self.fraction
        self.eta = 0.0
        took = f" in {event.elapsed:.1f} s" if isinstance(event.elapsed, int | float) else ""
        self.status_text = (
            f"Cancelled at iteration {iterations}; kept {_count(len(self.frames), 'frame')}"
            if self.cancelled
            else f"Done: {iterations} iterations{took}"
        )
        self.done = True

    def _keep(self, frame: JobFrame) -> None:
        frame.image = _own(frame.image)
        self.frames.append(frame)

    def _label(self, iteration: int, final: bool) -> str:
        return frame_layer_name(self.style_name, iteration, self.total, final=final)

    def _finish_cancelled(self) -> None:
        self.cancelled = True
        self.done = True
        self.status_text = f"Cancelled; kept {_count(len(self.frames), 'frame')}"

    def _fail(self, exc: ImpastoError) -> None:
        self.error = exc
        self.done = True
        self.connection = _STATE_OF_ERROR.get(exc.code, self.connection)
        self.status_text = "Failed: " + exc.message


class SequenceHostJob(HostJob):
    """Drives one animation through the daemon as a single sequence job, so every frame
    after the first starts from its predecessor (temporally stable; see
    docs/ARCHITECTURE.md, "Animations").

    ``frames``: (key, picture) per source frame in playback order, where the key is
    whatever the editor names a frame by (Krita: the keyframe's time; GIMP: the frame
    layer). Consecutive identical pictures (holds) are sent once and their result goes
    to every key. Each finished frame is handed to ``on_frame(key, image)`` the moment
    it arrives (at the working size, the source's alpha restored), so a cancel keeps
    everything already written; ``frames`` holds one ``JobFrame`` per key written.
    The connection, daemon start, cancel and errors are ``HostJob``'s.
    """

    def __init__(
        self,
        client: Any,
        frames: Sequence[tuple[Any, RawImage | ContentSource]],
        styles: list[RawImage],
        options: JobOptions,
        sequence: SequenceOptions | None = None,
        on_frame: Callable[[Any, RawImage], Any] | None = None,
        style_name: str = "style",
        **kwargs: Any,
    ):
        if not frames:
            raise ImpastoError("the animation has no frames to stylise", errors.BAD_IMAGE)
        sizes = {(picture.width, picture.height) for _, picture in frames}
        if len(sizes) > 1:
            listed = ", ".join(f"{w}x{h}" for w, h in sorted(sizes))
            raise ImpastoError(
                f"the animation's frames differ in size ({listed}); they must all be one size",
                errors.BAD_IMAGE,
            )
        # Progress pictures of single frames would only cost bandwidth: the finished
        # frames are the results.
        super().__init__(
            client, frames[0][1], styles, options.replace(frames=0), style_name, **kwargs
        )
        self.sources = list(frames)
        self.sequence = sequence or SequenceOptions()
        self.on_frame = on_frame
        self.n_frames = len(frames)  # frames sent, once holds are merged
        self.frame_index = 0
        self.sent: list[RawImage] = []  # the pictures sent, at the working size
        self.keys: list[list[Any]] = []  # per sent frame, the source frames it stands for
        self.finished: set[int] = set()
        self._frame_started = time.monotonic()
        self._warm_seconds: list[float] = []  # wall time of each finished warm frame

    @property
    def can_refine(self) -> bool:
        return False  # an animation is rendered at its size in one go

    def _send(self, max_pixels: int) -> str:
        self.sent, self.keys = [], []
        for key, source in self.sources:
            picture = self._read_content(source, max_pixels)
            if self.sent and _same_picture(picture, self.sent[-1]):
                self.keys[-1].append(key)  # a hold: the previous frame's result again
                continue
            self.sent.append(picture)
            self.keys.append([key])
        self.n_frames = len(self.sent)
        if self.n_frames == 1:  # one picture (held throughout): a still job
            job_id = self.client.submit(self.sent[0], self.styles, self.options)
        else:
            job_id = self.client.submit_sequence(
                self.sent, self.styles, self.options, self.sequence
            )
        self._frame_started = time.monotonic()
        return job_id

    def _handle(self, event: Event) -> None:
        if isinstance(event, FrameDone):
            self._deliver(event.index, event.image, warm=bool(event.warm))
        else:
            super()._handle(event)

    def _on_progress(self, event: Progress) -> None:
        index = event.frame_index or 0
        self.frame_index = index
        self.iteration = int(event.iteration)
        self.total = int(event.total) or self.total
        within = min(1.0, self.iteration / max(1, self.total))
        self.fraction = min(1.0, (len(self.finished) + within) / max(1, self.n_frames))
        self.eta = self._sequence_eta(event)
        self.losses = dict(event.losses or {})
        text = f"Frame {index + 1} of {self.n_frames} · iteration {self.iteration}/{self.total}"
        if self.eta is not None and not self.cancel_requested:
            text += f" · about {format_eta(self.eta)} left"
        self.status_text = "Cancelling… " + text if self.cancel_requested else text

    def _sequence_eta(self, event: Progress) -> float | None:
        """This frame's ETA plus the frames after it: as long as the warm frames took so
        far, else this frame's pace over a warm frame's iterations."""
        if event.eta is None:
            return None
        later = self.n_frames - self.frame_index - 1
        if later <= 0:
            return event.eta
        if self._warm_seconds:
            per_frame = sum(self._warm_seconds) / len(self._warm_seconds)
        else:
            pace = (time.monotonic() - self._frame_started) / max(1, self.iteration)
            first = self.frame_index == 0 and not self.sequence.independent
            per_frame = pace * (self.sequence.warm_budget(self.total) if first else self.total)
        return event.eta + later * per_frame

    def _deliver(self, index: int, image: RawImage, warm: bool = False) -> None:
        """A finished frame: restore its alpha, hand it to the editor for every key."""
        if index in self.finished or not 0 <= index < len(self.keys):
            return
        now = time.monotonic()
        if warm:
            self._warm_seconds.append(now - self._frame_started)
        self._frame_started = now
        image = _own(image)
        sent = self.sent[index]
        if (image.width, image.height) == (sent.width, sent.height):
            image = restore_alpha(image, sent)
        self.finished.add(index)
        self.fraction = len(self.finished) / max(1, self.n_frames)
        label = f"{self.style_name} – frame {index + 1}/{self.n_frames}"
        for key in self.keys[index]:
            self.frames.append(JobFrame(label, self.iteration, image, key=key))
            if self.on_frame is None:
                continue
            try:
                self.on_frame(key, image)
            except ImpastoError as exc:  # the editor could not write it: stop the job
                self._abandon(exc)
                return
        done = len(self.finished)
        self.status_text = f"Frame {index + 1} of {self.n_frames} done ({done} finished)"

    def _abandon(self, exc: ImpastoError) -> None:
        job_id = self.job_id
        self._fail(exc)
        if job_id is not None:
            with contextlib.suppress(ImpastoError):  # the daemon may be gone too
                self.client.cancel(job_id)

    def _on_result(self, event: Result) -> None:
        self.result = event
        self.cancelled = bool(event.cancelled)
        finished = int(event.frames)
        if self.n_frames == 1:  # a still job: its image is the frame, unless cancelled
            finished = 0 if self.cancelled else 1
        if finished > 0:  # its image is the last finished frame, should that have been lost
            self._deliver(finished - 1, event.image)
        if self.done:  # the editor failed to write it
            return
        self.done = True
        self.eta = 0.0
        written = _count(len(self.frames), "frame")
        if self.cancelled:
            self.status_text = (
                f"Cancelled after {len(self.finished)} of {self.n_frames}; kept {written}"
            )
        else:
            self.fraction = 1.0
            took = f" in {event.elapsed:.1f} s" if isinstance(event.elapsed, int | float) else ""
            self.status_text = f"Done: {written}{took}"


def _same_picture(a: RawImage, b: RawImage) -> bool:
    return (a.width, a.height, a.channels, a.depth) == (
        b.width,
        b.height,
        b.channels,
        b.depth,
    ) and (bytes(a.data) == bytes(b.data))


def _own(image: RawImage) -> RawImage:
    """A copy holding its own bytes: the client hands out zero-copy views."""
    if isinstance(image.data, bytes):
        return image
    return RawImage(image.width, image.height, image.channels, image.depth, bytes(image.data))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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


def format_eta(seconds: float | None) -> str:
    """ "0:42" / "1:02:03" for a status line; "?" when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    secs = round(seconds)
    hours, rest = divmod(secs, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
