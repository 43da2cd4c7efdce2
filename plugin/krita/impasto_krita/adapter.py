"""The Krita side of a job: read the active layer, run a HostJob, insert the frames.

Everything here runs on Krita's GUI thread. ``KritaRun`` is shared by the dialog
(which pumps it from a QTimer) and by ``stylize_active_layer`` (which blocks, for the
Scripter and the tests, while Krita's event loop keeps turning); the job, its names and
where results stack live in ``impasto.plugin.hostjob``: this module only reads and
writes Krita's pixels and layers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from krita import Krita

from impasto.plugin.client import Client
from impasto.plugin.hostjob import (
    DEFAULT_SETTINGS,
    ContentSource,
    HostJob,
    JobFrame,
    Region,
    group_layer_name,
    insert_index,
    options_from_settings,
    restore_alpha,
    style_display_name,
    styles_label,
    unique_name,
)
from impasto.shared.errors import BAD_IMAGE, BAD_OPTIONS, ImpastoError
from impasto.shared.rawimage import RawImage

from . import qtimage
from .qt import QByteArray, QCoreApplication, QRect, QTimer

DEPTH_BITS = {"U8": 8, "U16": 16}
SRGB_PROFILE = "sRGB-elle-V2-srgbtrc.icc"
# "group": a layer group of frames; "animation": one paint layer whose keyframes are the
# frames (0 = first progress frame … last = final), played with Krita's own playback.
PLACEMENTS = ("group", "animation")
# How a selection confines the frames: an editable transparency mask made from it (needs
# the source to be the active layer), or its coverage baked into the frames' alpha.
CONFINE_MODES = ("mask", "alpha")


# -- reading pixels ---------------------------------------------------------------------
def read_node(node: Any, rect: QRect, time: int | None = None) -> RawImage:
    """Pixels of ``node`` inside ``rect`` as RGBA 8/16 bit (RGBA and grey layers); with
    ``time``, those of the animated layer's keyframe at that frame."""
    model, depth = node.colorModel(), node.colorDepth()
    if depth not in DEPTH_BITS or model not in ("RGBA", "GRAYA"):
        raise ImpastoError(
            f"layer '{node.name()}' is {model} {depth}; Impasto reads RGB/Alpha and "
            "Grayscale/Alpha layers at 8 or 16 bit integer: convert it with "
            "Layer › Convert › Convert Layer Color Space",
            BAD_IMAGE,
        )
    bits = DEPTH_BITS[depth]
    box = (rect.x(), rect.y(), rect.width(), rect.height())
    data = bytes(node.pixelData(*box) if time is None else node.pixelDataAtTime(*box, time))
    if model == "RGBA":
        return RawImage.from_bgra(rect.width(), rect.height(), bits, data)
    return _grey_to_rgba(rect.width(), rect.height(), bits, data)


def _grey_to_rgba(width: int, height: int, bits: int, data: bytes) -> RawImage:
    n = bits // 8
    out = bytearray(width * height * 4 * n)
    for lane in range(n):
        grey = data[lane :: 2 * n]
        for channel in range(3):
            out[channel * n + lane :: 4 * n] = grey
        out[3 * n + lane :: 4 * n] = data[n + lane :: 2 * n]
    return RawImage(width, height, 4, bits, bytes(out))


def region_rect(doc: Any, node: Any) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the layer's pixels on the canvas, cut to the selection's
    bounding box if any: what a run stylises, without reading a pixel."""
    if doc is None or node is None:
        raise ImpastoError("open an image and choose a layer first", BAD_IMAGE)
    rect = node.bounds().intersected(QRect(0, 0, doc.width(), doc.height()))
    if rect.isEmpty():
        raise ImpastoError(f"layer '{node.name()}' is empty: nothing to stylise", BAD_IMAGE)
    selection = doc.selection()
    if selection is not None and selection.width() > 0 and selection.height() > 0:
        box = QRect(selection.x(), selection.y(), selection.width(), selection.height())
        rect = rect.intersected(box)
        if rect.isEmpty():
            raise ImpastoError(f"the selection does not touch layer '{node.name()}'", BAD_IMAGE)
    return rect.x(), rect.y(), rect.width(), rect.height()


def layer_region(doc: Any, node: Any) -> tuple[Region, bytes | None]:
    """The layer's pixels on the canvas, cut to the selection's bounding box if any.

    Returns the region and the selection's 8-bit coverage inside it (None = no selection).
    """
    rect = QRect(*region_rect(doc, node))
    coverage = None
    selection = doc.selection()
    if selection is not None and selection.width() > 0 and selection.height() > 0:
        coverage = bytes(selection.pixelData(rect.x(), rect.y(), rect.width(), rect.height()))
        if not any(coverage):
            raise ImpastoError("the selection is empty", BAD_IMAGE)
    return Region(rect.x(), rect.y(), rect.width(), rect.height(), coverage is not None), coverage


def read_style(source: Any) -> tuple[RawImage, str]:
    """A style from a file path or from a layer (of any open document), and its name."""
    if isinstance(source, str | Path):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ImpastoError(f"style image not found: {path}", BAD_IMAGE)
        return qtimage.load_image_file(str(path)), style_display_name(path)
    bounds = source.bounds()
    if bounds.isEmpty():
        raise ImpastoError(f"style layer '{source.name()}' is empty", BAD_IMAGE)
    return read_node(source, bounds), source.name()


# -- the run ----------------------------------------------------------------------------
class KritaRun:
    """One stylisation of one layer: prepare, start, pump, then insert the frames."""

    def __init__(
        self,
        doc: Any,
        node: Any,
        styles: list[Any],
        settings: dict[str, Any] | None = None,
        client: Client | None = None,
        preview: HostJob | None = None,
    ):
        """``preview``: a finished preview job of this layer; the run then refines it
        at the layer's own size (``HostJob.refinement``) instead of starting afresh."""
        if doc is None or node is None:
            raise ImpastoError("open an image and choose a layer first", BAD_IMAGE)
        if not styles:
            raise ImpastoError("choose at least one style image", BAD_OPTIONS)
        self.doc, self.node = doc, node
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.placement = str(self.settings.get("placement") or "group")
        if self.placement not in PLACEMENTS:
            raise ImpastoError(
                f"placement '{self.placement}' is not one of {', '.join(PLACEMENTS)}", BAD_OPTIONS
            )
        self.confine = str(self.settings.get("confine") or "mask")
        if self.confine not in CONFINE_MODES:
            raise ImpastoError(
                f"confine '{self.confine}' is not one of {', '.join(CONFINE_MODES)}", BAD_OPTIONS
            )
        self._read_source()
        read = [read_style(s) for s in styles]
        self.style_names = [name for _, name in read]
        self.client = client or Client(
            endpoint=self.settings.get("endpoint") or None,
            timeout=float(self.settings.get("timeout") or 10.0),
        )
        if preview is not None:
            self.job = preview.refinement(self.client)
        else:
            self.job = self._new_job(read)
        self.layer_names: list[str] = []
        self.keyframer: Keyframer | None = None

    def _read_source(self) -> None:
        """The region to stylise and its pixels (whose alpha goes onto every frame)."""
        self.region, self.coverage = layer_region(self.doc, self.node)
        self.selection = self.doc.selection() if self.coverage is not None else None
        self.source = read_node(self.node, QRect(*self._rect()))

    def _new_job(self, read: list[tuple[RawImage, str]]) -> HostJob:
        return HostJob(
            self.client,
            ContentSource(self.source.width, self.source.height, self._content),
            [image for image, _ in read],
            options_from_settings(self.settings),
            style_name=styles_label(self.style_names),
            autostart=bool(self.settings.get("autostart", True)),
        )

    def _content(self, width: int, height: int) -> RawImage:
        return qtimage.scaled(self.source, width, height)

    def _rect(self) -> tuple[int, int, int, int]:
        r = self.region
        return r.x, r.y, r.width, r.height

    def start(self) -> None:
        self.job.start()

    def pump(self, timeout: float = 0.0) -> bool:
        return self.job.pump(timeout)

    def cancel(self) -> None:
        self.job.cancel()

    def close(self) -> None:
        self.client.close()

    def run_blocking(
        self, timeout: float | None = None, on_progress: Callable[[HostJob], Any] | None = None
    ) -> list[str]:
        """Run to the end while Krita's event loop keeps turning; insert the frames.

        ``on_progress(job)`` is called about ten times a second; the job's status line
        also shows in Krita's status bar. Past ``timeout`` the job is cancelled and the
        frames so far are kept."""
        status_bar = _status_bar()

        def update(job: HostJob) -> None:
            if status_bar is not None:
                status_bar.showMessage(f"Impasto: {job.status_text}", 5000)
            if on_progress is not None:
                on_progress(job)
            QCoreApplication.processEvents()

        try:
            self.job.run_blocking(timeout, on_update=update)
            return self.insert_frames()
        finally:
            self.close()

    # -- writing the frames -------------------------------------------------------------
    def insert_frames(self) -> list[str]:
        """Put the kept frames into the document above the source and every earlier
        result on it; their layer names (the group or animated layer first)."""
        frames = self.job.frames
        if not frames:
            return []
        template = None
        if self.coverage is not None and self.confine == "mask":
            template = self._selection_mask()
        if self.placement == "animation":
            names, layers = self._insert_animation(frames)
        else:
            names, layers = self._insert_group(frames)
        if template is not None:
            self._confine(layers, template)
        self.doc.refreshProjection()
        if self.keyframer is None:  # Krita activates what a script adds: give it back
            QTimer.singleShot(0, self.reactivate_source)
        self.layer_names = names
        return names

    def reactivate_source(self) -> None:
        """Make the source the active layer again, so a second run starts from it."""
        self.doc.setActiveNode(self.node)

    def _place(self, new: Any) -> None:
        """Add ``new`` beside the source: above it and every Impasto result on it."""
        parent = self.node.parentNode()
        siblings = parent.childNodes()  # bottom-up
        ids = [n.uniqueId() for n in siblings]
        index = insert_index([n.name() for n in siblings], ids.index(self.node.uniqueId()))
        parent.addChildNode(new, siblings[index])

    def _result_name(self) -> str:
        taken = {n.name() for n in _all_nodes(self.doc.rootNode())}
        return unique_name(group_layer_name(self.style_names), taken)

    def _insert_group(self, frames: list[JobFrame]) -> tuple[list[str], list[Any]]:
        group = self.doc.createGroupLayer(self._result_name())
        self._place(group)
        names, layers = [group.name()], []
        below = None
        for frame in frames:
            layer = self.doc.createNode(frame.label, "paintlayer")
            group.addChildNode(layer, below)
            self._write(layer, frame.image)
            layer.setVisible(frame.final)  # the final image shows; scrub the others
            below = layer
            names.append(layer.name())
            layers.append(layer)
        return names, layers

    def _insert_animation(self, frames: list[JobFrame]) -> tuple[list[str], list[Any]]:
        """One paint layer whose keyframes 0…N become the frames (the final one last)
        a moment later: see ``Keyframer``."""
        layer = self.doc.createNode(self._result_name(), "paintlayer")
        self._place(layer)
        self.keyframer = Keyframer(self, layer, set_range=True)
        for time, frame in enumerate(frames):
            self.keyframer.add(time, frame.image)
        self.keyframer.close()
        return [layer.name()], [layer]

    def _write(self, layer: Any, image: RawImage, source: RawImage | None = None) -> None:
        """Fill the layer's region with the image (scaled to it, at the layer's depth),
        with the alpha of ``source`` (the region's pixels; the source layer's by default)."""
        model, depth = layer.colorModel(), layer.colorDepth()
        if model != "RGBA" or depth not in DEPTH_BITS:
            bits = 16 if depth not in ("U8",) else 8
            layer.setColorSpace("RGBA", "U16" if bits == 16 else "U8", SRGB_PROFILE)
            depth = layer.colorDepth()
        bits = DEPTH_BITS.get(depth, 8)
        x, y, w, h = self._rect()
        pixels = restore_alpha(qtimage.scaled(image, w, h), source or self.source)
        if self.coverage is not None and self.confine == "alpha":
            pixels = qtimage.multiply_alpha(pixels, self.coverage)
        pixels = pixels.to_depth(bits)
        layer.setPixelData(QByteArray(pixels.to_bgra()), x, y, w, h)

    def _selection_mask(self) -> Any:
        """A transparency mask made from the selection (feathering kept), to copy onto
        each frame. Krita 5.1's API cannot fill a new mask, so the plug-in does what the
        artist would: add one to the active (source) layer, then moves it."""
        self.doc.waitForDone()
        active = self.doc.activeNode()
        if active is None or active.uniqueId() != self.node.uniqueId():
            self.confine = "alpha"  # the artist moved on to another layer: bake it in
            return None
        current = self.doc.selection()  # the artist may have changed it meanwhile
        self.doc.setSelection(self.selection)
        before = {n.uniqueId() for n in self.node.childNodes()}
        Krita.instance().action("add_new_transparency_mask").trigger()
        self.doc.waitForDone()
        if current is not None:
            self.doc.setSelection(current)  # the action deselects; the artist keeps it
        new = [n for n in self.node.childNodes() if n.uniqueId() not in before]
        if len(new) != 1 or new[0].type() != "transparencymask":
            for node in new:  # not what we asked for: leave the source as it was
                node.remove()
            self.confine = "alpha"
            return None
        return new[0]

    def _confine(self, layers: list[Any], template: Any) -> None:
        for layer in layers:
            mask = template.duplicate()
            mask.setName("Impasto selection")
            layer.addChildNode(mask, None)
        template.remove()
        self.doc.waitForDone()


# Keyframers still at work (a blocking script returns before they finish).
PENDING: set[Keyframer] = set()


def pending() -> bool:
    """True while keyframes are still being added (scripts can wait on it)."""
    return bool(PENDING)


class Keyframer:
    """Writes images into keyframes of ``layer`` at given frame times.

    Krita 5.1's API adds keyframes only through the timeline actions, which act on the
    active layer at the current time; and Krita activates a layer a script added only
    once control is back in its main event loop (measured: never inside a nested event
    loop, at once after returning). So this continues from QTimer callbacks, one step
    at a time: wait until the layer is active and has stayed so while Krita's timeline
    and curves dockers catch up (adding them all at once aborted Krita 5.1.5 in two of
    six test runs: "row >= 0" in KisAnimCurvesChannelsModel; with this wait, six of six
    passed), then one keyframe per step. Images may keep arriving (``add``) while it
    works, as an animation job finishes frame after frame; ``close`` says no more come.
    Then, with ``set_range``, the playback range becomes the keyframes' span (else the
    document's range and current time stay as they were). A blocking script's call
    returns first; ``done`` says when all is in. If Krita never activates the layer,
    the layer keeps the last image alone and ``note`` says so."""

    STEP_MS = 50
    SETTLE = 10  # steps the layer must stay active before the first keyframe: 0.5 s
    PATIENCE = 60  # steps to wait for Krita to activate the layer once closed: 3 s

    def __init__(self, run: KritaRun, layer: Any, on_done: Any = None, set_range: bool = False):
        self.run, self.layer = run, layer
        self.on_done = on_done
        self.set_range = set_range
        self.queue: list[tuple[int, RawImage, RawImage | None]] = []
        self.times: list[int] = []  # keyframes written
        self.closed = False
        self.done = False
        self.note = ""
        self.waited = 0  # steps waited for activation since close()
        self.tries = 0
        self.settled = 0
        self.start_time = run.doc.currentTime()
        PENDING.add(self)
        QTimer.singleShot(0, self._step)

    def add(self, time: int, image: RawImage, source: RawImage | None = None) -> None:
        """Queue ``image`` for the keyframe at ``time`` (``source``: whose alpha it gets)."""
        if not self.done:
            self.queue.append((time, image, source))

    def close(self) -> None:
        self.closed = True

    def _step(self) -> None:
        doc = self.run.doc
        active = doc.activeNode()
        if not self.queue:
            if self.closed:
                return self._finish()
        elif active is None or active.uniqueId() != self.layer.uniqueId():
            self.settled = 0
            self.tries += 1
            if self.closed:  # no hurry while frames still come (a script's nested loop)
                self.waited += 1
            if self.waited > self.PATIENCE:
                self.note = "Krita did not activate the new layer: the last image only"
                _time, image, source = self.queue[-1]
                self.run._write(self.layer, image, source)
                self.queue.clear()
                return self._finish()
            if self.tries % 5 == 1:
                doc.setActiveNode(self.layer)
        elif self.settled < self.SETTLE:
            self.settled += 1
        else:
            self._add_keyframe(*self.queue.pop(0))
        QTimer.singleShot(self.STEP_MS, self._step)

    def _add_keyframe(self, time: int, image: RawImage, source: RawImage | None) -> None:
        doc = self.run.doc
        doc.setCurrentTime(time)
        Krita.instance().action("add_blank_frame").trigger()
        doc.waitForDone()
        self.run._write(self.layer, image, source)
        self.times.append(time)

    def _set_range(self) -> None:
        doc = self.run.doc
        last = max(self.times)
        doc.setFullClipRangeStartTime(0)
        doc.setFullClipRangeEndTime(last)
        doc.setPlayBackRange(0, last)
        if doc.playBackEndTime() < last:  # Krita 5.1.5 reads the end as exclusive
            doc.setPlayBackRange(0, last + 1)
        doc.setCurrentTime(last)  # the final image is what shows

    def _finish(self) -> None:
        doc = self.run.doc
        if self.set_range and self.times:
            self._set_range()
        elif self.times:
            doc.setCurrentTime(self.start_time)
        doc.refreshProjection()
        self.done = True
        PENDING.discard(self)
        self.run.reactivate_source()
        if self.on_done is not None:
            self.on_done(self)


def stylize_active_layer(
    style_paths: list[str] | str,
    on_progress: Callable[[HostJob], Any] | None = None,
    **options: Any,
) -> list[str]:
    """Stylise the active layer of the active document, blocking until done.

    ``style_paths``: style image files (or Krita layers); ``on_progress(job)``: called
    about ten times a second with the running ``HostJob`` (``status_text``,
    ``fraction``, ``frames``), besides Krita's status bar showing the status;
    ``options``: every dialog setting under the CLI's names (size, iterations, frames,
    strength, stroke_scale, placement, ...), plus ``endpoint`` and ``run_timeout`` (seconds).
    Returns the names of the layers created (the group or animated layer first).
    With ``placement="animation"`` the keyframes are added once the script has returned
    control to Krita (``pending()`` is True until then). Raises ImpastoError with a
    readable message.
    """
    return run_on_active_layer(KritaRun, style_paths, on_progress, options)


def run_on_active_layer(
    run_class: type[KritaRun],
    style_paths: list[str] | str,
    on_progress: Callable[[HostJob], Any] | None,
    options: dict[str, Any],
) -> list[str]:
    """The scripting entries' body: a ``run_class`` run of the active layer, blocking."""
    if isinstance(style_paths, str | Path):
        style_paths = [style_paths]
    doc = Krita.instance().activeDocument()
    node = doc.activeNode() if doc is not None else None
    timeout = options.pop("run_timeout", None)
    run = run_class(doc, node, list(style_paths), options)
    return run.run_blocking(timeout, on_progress)


def _status_bar() -> Any:
    window = Krita.instance().activeWindow()
    return window.qwindow().statusBar() if window is not None else None


def _all_nodes(node: Any):
    for child in node.childNodes():
        yield child
        yield from _all_nodes(child)
