"""Stylise animation: every keyframe of an animated paint layer, temporally stable.

The keyframes (holds are no keyframes, so each picture goes once) travel as one
sequence job (``SequenceHostJob``); each finished frame becomes a keyframe at the same
frame time on a new paint layer above the source, as it arrives, so a cancel keeps the
frames done so far. The document's playback range stays as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from impasto.plugin.hostjob import (
    ContentSource,
    HostJob,
    Region,
    SequenceHostJob,
    options_from_settings,
    sequence_options_from_settings,
    styles_label,
)
from impasto.shared.errors import BAD_IMAGE, ImpastoError
from impasto.shared.rawimage import RawImage

from . import qtimage
from .adapter import Keyframer, KritaRun, read_node, run_on_active_layer
from .qt import QRect


def keyframe_times(doc: Any, node: Any) -> list[int]:
    """The frame times of ``node``'s keyframes within the document's full clip range."""
    start, end = doc.fullClipRangeStartTime(), doc.fullClipRangeEndTime()
    return [t for t in range(start, end + 1) if node.hasKeyframeAtTime(t)]


def is_animated_paint_layer(node: Any) -> bool:
    return node is not None and node.type() == "paintlayer" and bool(node.animated())


def animation_extent(doc: Any, node: Any) -> tuple[int, int, int]:
    """(width, height, keyframes) an animation run of ``node`` sends, without reading a
    pixel: the whole canvas per keyframe (a hold of identical keyframes, sent once, is
    still counted: finding one means reading every frame)."""
    if doc is None or not is_animated_paint_layer(node):
        raise ImpastoError("choose an animated paint layer to stylise its animation", BAD_IMAGE)
    keyframes = len(keyframe_times(doc, node))
    if not keyframes:
        raise ImpastoError(f"layer '{node.name()}' has no keyframes to stylise", BAD_IMAGE)
    return doc.width(), doc.height(), keyframes


class KritaAnimationRun(KritaRun):
    """Stylise every keyframe of the active animated paint layer (the whole canvas of
    each); the result is a new animated layer with a keyframe at each source time."""

    def _read_source(self) -> None:
        node, doc = self.node, self.doc
        if not is_animated_paint_layer(node):
            raise ImpastoError(
                f"layer '{node.name()}' is not an animated paint layer: choose the layer "
                "whose keyframes to stylise (for a still layer, use Neural Style Transfer)",
                BAD_IMAGE,
            )
        self.times = keyframe_times(doc, node)
        if not self.times:
            raise ImpastoError(
                f"layer '{node.name()}' has no keyframes between frames "
                f"{doc.fullClipRangeStartTime()} and {doc.fullClipRangeEndTime()}",
                BAD_IMAGE,
            )
        self.region, self.coverage, self.selection = (
            Region(0, 0, doc.width(), doc.height()),
            None,
            None,
        )
        rect = QRect(*self._rect())
        self.sources = {t: read_node(node, rect, t) for t in self.times}
        self.source = self.sources[self.times[0]]

    def _new_job(self, read: list[tuple[RawImage, str]]) -> HostJob:
        frames = [(t, self._content_at(t)) for t in self.times]
        return SequenceHostJob(
            self.client,
            frames,
            [image for image, _ in read],
            options_from_settings(self.settings),
            sequence_options_from_settings(self.settings),
            on_frame=self._frame_done,
            style_name=styles_label(self.style_names),
            autostart=bool(self.settings.get("autostart", True)),
        )

    def _content_at(self, time: int) -> ContentSource:
        source = self.sources[time]
        return ContentSource(source.width, source.height, lambda w, h: qtimage.scaled(source, w, h))

    def _frame_done(self, time: int, image: RawImage) -> None:
        """A finished frame: its keyframe goes in as soon as Krita lets it."""
        if self.keyframer is None:
            layer = self.doc.createNode(self._result_name(), "paintlayer")
            self._place(layer)
            self.layer_names = [layer.name()]
            self.keyframer = Keyframer(self, layer)
        self.keyframer.add(time, image, self.sources[time])

    def close(self) -> None:
        if self.keyframer is not None:  # also when the job failed: keep what came
            self.keyframer.close()
        super().close()

    def insert_frames(self) -> list[str]:
        """The keyframes are in (or on their way) already: say no more come."""
        if self.keyframer is None:
            return []
        self.keyframer.close()
        return list(self.layer_names)


def stylize_animation(
    style_paths: list[str] | str,
    on_progress: Callable[[HostJob], Any] | None = None,
    **options: Any,
) -> list[str]:
    """Stylise every keyframe of the active animated paint layer, blocking until done.

    As ``stylize_active_layer``, plus the animation settings ``temporal_weight``,
    ``warm_iterations``, ``flow`` and ``independent`` (SequenceOptions). Returns the
    new animated layer's name; its keyframes are added once the script has returned
    control to Krita (``pending()`` is True until then).
    """
    return run_on_active_layer(KritaAnimationRun, style_paths, on_progress, options)
