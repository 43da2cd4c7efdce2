"""Stylise all frames: an image whose top-level layers are animation frames.

GIMP's convention (Filters > Animation > Playback, GIF export): each top-level layer is
a frame, the bottom one first; a name may carry its duration "(100ms)" and how it
replaces the previous frame: "(replace)" shows the layer alone, "(combine)" (the
default) draws it over what was showing. So a frame's picture is what playback shows,
built here in a scratch image; the results are whole pictures, one layer per frame in a
new group, named with the frame's duration and "(replace)".
"""

from __future__ import annotations

import re

from impasto_gimp_pixels import read_region, write_layer

from impasto.plugin.hostjob import (
    ContentSource,
    group_layer_name,
    is_result_name,
    unique_name,
)
from impasto.shared.errors import BAD_IMAGE, ImpastoError
from impasto.shared.rawimage import RawImage

from gi.repository import Gimp  # isort: skip

_DELAY = re.compile(r"\(\s*(\d+)\s*ms\s*\)")
_DISPOSAL = re.compile(r"\((combine|replace)\)")
_TAGS = re.compile(r"\s*\((?:\s*\d+\s*ms\s*|combine|replace)\)")


def frame_layers(image: Gimp.Image) -> list[Gimp.Layer]:
    """The frames in playback order (bottom layer first), Impasto's results left out."""
    frames = [layer for layer in image.get_layers() if not is_result_name(layer.get_name())]
    for layer in frames:
        if layer.is_group_layer():
            raise ImpastoError(
                f"frame '{layer.get_name()}' is a layer group: merge it into one layer "
                "(Layer > Merge Layer Group) to stylise the animation",
                BAD_IMAGE,
            )
    if not frames:
        raise ImpastoError("the image has no frame layers to stylise", BAD_IMAGE)
    return list(reversed(frames))


def frame_delay(name: str) -> int | None:
    """The frame's duration tag "(100ms)" in milliseconds, if it has one."""
    match = _DELAY.search(name)
    return int(match.group(1)) if match else None


def combines(name: str) -> bool:
    """True unless the frame is tagged "(replace)": it is drawn over the previous one."""
    match = _DISPOSAL.search(name)
    return match is None or match.group(1) == "combine"


def result_frame_name(source_name: str, style_name: str) -> str:
    """ "Frame 1 (100ms)" -> "starry_night – Frame 1 (100ms) (replace)": the result is
    a whole picture, so it replaces the previous frame; the duration stays."""
    base = _TAGS.sub("", source_name).strip() or "frame"
    delay = frame_delay(source_name)
    timing = f" ({delay}ms)" if delay is not None else ""
    return f"{style_name} – {base}{timing} (replace)"


class FramePictures:
    """What playback shows at each frame, as canvas-size layers of a scratch image;
    ``sources`` reads each at the size the job works at. ``close`` deletes it."""

    def __init__(self, image: Gimp.Image, frames: list[Gimp.Layer], depth: int):
        self.width, self.height, self.depth = image.get_width(), image.get_height(), depth
        self.scratch = Gimp.Image.new_with_precision(
            self.width, self.height, Gimp.ImageBaseType.RGB, image.get_precision()
        )
        self.scratch.undo_disable()
        self.pictures: list[Gimp.Layer] = []
        shown = None
        for layer in frames:
            picture = self._copy(layer)
            if shown is not None and combines(layer.get_name()):
                below = shown.copy()
                self.scratch.insert_layer(below, None, 1)  # right under the new frame
                picture = self.scratch.merge_down(picture, Gimp.MergeType.CLIP_TO_IMAGE)
            self.pictures.append(picture)
            shown = picture

    def _copy(self, layer: Gimp.Layer) -> Gimp.Layer:
        copy = Gimp.Layer.new_from_drawable(layer, self.scratch)
        self.scratch.insert_layer(copy, None, 0)
        _ok, x, y = layer.get_offsets()
        copy.set_offsets(x, y)
        copy.set_visible(True)
        if not copy.has_alpha():
            copy.add_alpha()
        copy.resize_to_image_size()  # transparent where the layer does not reach
        return copy

    def source(self, index: int) -> ContentSource:
        picture = self.pictures[index]

        def read(width: int, height: int) -> RawImage:
            return read_region(
                picture, 0, 0, self.width, self.height, self.depth, width / self.width
            )

        return ContentSource(self.width, self.height, read)

    def close(self) -> None:
        self.scratch.delete()


class FrameWriter:
    """Puts each finished frame into a new group on top of the image as it arrives:
    one canvas-size layer per source frame, stacked in the frames' order."""

    def __init__(self, image: Gimp.Image, style_name: str):
        self.image, self.style_name = image, style_name
        self.group: Gimp.GroupLayer | None = None
        self.layers: list[Gimp.Layer] = []

    def __call__(self, frame: Gimp.Layer, picture: RawImage) -> None:
        image = self.image
        taken = {layer.get_name() for layer in image.get_layers()}
        if self.group is None:
            self.group = Gimp.GroupLayer.new(
                image, unique_name(group_layer_name(self.style_name), taken)
            )
            image.insert_layer(self.group, None, 0)
        taken |= {layer.get_name() for layer in self.layers}
        name = unique_name(result_frame_name(frame.get_name(), self.style_name), taken)
        layer = Gimp.Layer.new(
            image,
            name,
            image.get_width(),
            image.get_height(),
            Gimp.ImageType.RGBA_IMAGE,
            100.0,
            Gimp.LayerMode.NORMAL,
        )
        image.insert_layer(layer, self.group, 0)  # each later frame goes on top
        write_layer(layer, picture)
        self.layers.append(layer)
        Gimp.displays_flush()
