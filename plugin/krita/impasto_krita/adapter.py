"""The Krita side of a job: read the active layer, run a HostJob, insert the frames.

Everything here runs on Krita's GUI thread. ``KritaRun`` is shared by the dialog
(which pumps it from a QTimer) and by ``stylize_active_layer`` (which blocks, for the
Scripter and the tests); the job logic itself lives in ``impasto.plugin.hostjob``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from krita import Krita

from impasto.plugin.client import Client
from impasto.plugin.hostjob import (
    DEFAULT_SETTINGS,
    HostJob,
    JobFrame,
    group_layer_name,
    options_from_settings,
    restore_alpha,
    style_display_name,
)
from impasto.shared.errors import BAD_IMAGE, BAD_OPTIONS, ImpastoError
from impasto.shared.rawimage import RawImage

from . import qtimage
from .qt import QByteArray, QCoreApplication, QRect

DEPTH_BITS = {"U8": 8, "U16": 16}
SRGB_PROFILE = "sRGB-elle-V2-srgbtrc.icc"
# Only a layer group: Krita 5.1's Python API has no way to add keyframes to a layer it
# creates (the timeline actions act on the UI's active layer, which scripts cannot set
# reliably, and Document.importAnimation crashes the timeline model).
PLACEMENTS = ("group",)
# How a selection confines the frames: an editable transparency mask made from it (needs
# the source to be the active layer), or its coverage baked into the frames' alpha.
CONFINE_MODES = ("mask", "alpha")


@dataclass
class Region:
    """The part of the layer being stylised, in image coordinates."""

    x: int
    y: int
    width: int
    height: int


# -- reading pixels ---------------------------------------------------------------------
def read_node(node: Any, rect: QRect) -> RawImage:
    """Pixels of ``node`` inside ``rect`` as RGBA 8/16 bit (RGBA and grey layers)."""
    model, depth = node.colorModel(), node.colorDepth()
    if depth not in DEPTH_BITS or model not in ("RGBA", "GRAYA"):
        raise ImpastoError(
            f"layer '{node.name()}' is {model} {depth}; Impasto reads RGB/Alpha and "
            "Grayscale/Alpha layers at 8 or 16 bit integer: convert it with "
            "Layer › Convert › Convert Layer Color Space",
            BAD_IMAGE,
        )
    bits = DEPTH_BITS[depth]
    data = bytes(node.pixelData(rect.x(), rect.y(), rect.width(), rect.height()))
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


def layer_region(doc: Any, node: Any) -> tuple[Region, bytes | None]:
    """The layer's pixels on the canvas, cut to the selection's bounding box if any.

    Returns the region and the selection's 8-bit coverage inside it (None = no selection).
    """
    rect = node.bounds().intersected(QRect(0, 0, doc.width(), doc.height()))
    if rect.isEmpty():
        raise ImpastoError(f"layer '{node.name()}' is empty: nothing to stylise", BAD_IMAGE)
    coverage = None
    selection = doc.selection()
    if selection is not None and selection.width() > 0 and selection.height() > 0:
        box = QRect(selection.x(), selection.y(), selection.width(), selection.height())
        rect = rect.intersected(box)
        if rect.isEmpty():
            raise ImpastoError(f"the selection does not touch layer '{node.name()}'", BAD_IMAGE)
        coverage = bytes(selection.pixelData(rect.x(), rect.y(), rect.width(), rect.height()))
        if not any(coverage):
            raise ImpastoError("the selection is empty", BAD_IMAGE)
    return Region(rect.x(), rect.y(), rect.width(), rect.height()), coverage


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
    ):
        if doc is None or node is None:
            raise ImpastoError("open an image and choose a layer first", BAD_IMAGE)
        if not styles:
            raise ImpastoError("choose at least one style image", BAD_OPTIONS)
        self.doc, self.node = doc, node
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.placement = str(self.settings.get("placement") or "group")
        if self.placement not in PLACEMENTS:
            raise ImpastoError(
                f"placement '{self.placement}' is not available in Krita "
                f"{Krita.instance().version()}: frames go into a layer group",
                BAD_OPTIONS,
            )
        self.confine = str(self.settings.get("confine") or "mask")
        if self.confine not in CONFINE_MODES:
            raise ImpastoError(
                f"confine '{self.confine}' is not one of {', '.join(CONFINE_MODES)}", BAD_OPTIONS
            )
        self.region, self.coverage = layer_region(doc, node)
        self.selection = doc.selection() if self.coverage is not None else None
        content = read_node(node, QRect(*self._rect()))
        read = [read_style(s) for s in styles]
        self.style_names = [name for _, name in read]
        options = options_from_settings(self.settings)
        self.source = content  # full resolution: its alpha goes back onto every frame
        long_edge = max(content.width, content.height)
        if options.size is not None and options.size >= long_edge:
            options = options.replace(size=None)  # never upscale past the layer itself
        elif options.size is not None:  # send no more pixels than the job will use
            scale = options.size / long_edge
            content = qtimage.scaled(
                content,
                max(1, round(content.width * scale)),
                max(1, round(content.height * scale)),
            )
        self.client = client or Client(
            endpoint=self.settings.get("endpoint") or None,
            timeout=float(self.settings.get("timeout") or 10.0),
        )
        self.job = HostJob(
            self.client,
            content,
            [image for image, _ in read],
            options,
            style_name=" + ".join(self.style_names),
        )
        self.layer_names: list[str] = []

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

    def run_blocking(self, timeout: float | None = None) -> list[str]:
        """Run to the end while keeping Krita's event loop turning; insert the frames."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.start()
        try:
            while self.pump(0.05):
                QCoreApplication.processEvents()
                late = deadline is not None and time.monotonic() > deadline
                if late and not self.job.cancel_requested:
                    self.cancel()  # keeps the frames so far
            if self.job.error is not None:
                raise self.job.error
            return self.insert_frames()
        finally:
            self.close()

    # -- writing the frames -------------------------------------------------------------
    def insert_frames(self) -> list[str]:
        """Put the kept frames into the document (final image on top); their layer names."""
        frames = self.job.frames
        if not frames:
            return []
        template = None
        if self.coverage is not None and self.confine == "mask":
            template = self._selection_mask()
        names, layers = self._insert_group(frames)
        if template is not None:
            self._confine(layers, template)
        self.doc.refreshProjection()
        self.layer_names = names
        return names

    def _insert_group(self, frames: list[JobFrame]) -> tuple[list[str], list[Any]]:
        group = self.doc.createGroupLayer(group_layer_name(self.style_names))
        self.node.parentNode().addChildNode(group, self.node)
        names, layers = [group.name()], []
        below = None
        for frame in frames:
            layer = self.doc.createNode(frame.label, "paintlayer")
            group.addChildNode(layer, below)
            self._write(layer, frame.image)
            below = layer
            names.append(layer.name())
            layers.append(layer)
        return names, layers

    def _write(self, layer: Any, image: RawImage) -> None:
        """Fill the layer's region with the image (scaled to it, at the layer's depth)."""
        model, depth = layer.colorModel(), layer.colorDepth()
        if model != "RGBA" or depth not in DEPTH_BITS:
            bits = 16 if depth not in ("U8",) else 8
            layer.setColorSpace("RGBA", "U16" if bits == 16 else "U8", SRGB_PROFILE)
            depth = layer.colorDepth()
        bits = DEPTH_BITS.get(depth, 8)
        x, y, w, h = self._rect()
        pixels = restore_alpha(qtimage.scaled(image, w, h), self.source)
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


def stylize_active_layer(style_paths: list[str] | str, **options: Any) -> list[str]:
    """Stylise the active layer of the active document, blocking until done.

    ``style_paths``: style image files (or Krita layers); ``options``: every dialog
    setting under the CLI's names (size, iterations, frames, strength, ...), plus
    ``endpoint`` and ``run_timeout`` (seconds). Returns the names of the
    layers created (the group first). Raises ImpastoError with a readable message.
    """
    if isinstance(style_paths, str | Path):
        style_paths = [style_paths]
    doc = Krita.instance().activeDocument()
    node = doc.activeNode() if doc is not None else None
    timeout = options.pop("run_timeout", None)
    run = KritaRun(doc, node, list(style_paths), options)
    return run.run_blocking(timeout)
