"""Pixels between GIMP and RawImage, through Gegl buffers.

Gegl converts on the way in and out, so reading a region as "R'G'B'A u8" or "u16"
works for every precision GIMP offers (8-bit up to 32-bit float): we ask for 16 bit
whenever the image holds more than 8, and the frames come back at that depth.
"""

from __future__ import annotations

import math

from impasto.shared.errors import BAD_IMAGE, ImpastoError
from impasto.shared.rawimage import RawImage

import gi  # isort: skip

gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402  isort: skip

_EIGHT_BIT = {
    Gimp.Precision.U8_LINEAR,
    Gimp.Precision.U8_NON_LINEAR,
    Gimp.Precision.U8_PERCEPTUAL,
}


def babl_format(channels: int, depth: int) -> str:
    """The Gegl/babl format name for a RawImage layout (non-linear, like PNG/JPEG data)."""
    return f"R'G'B'{'A' if channels == 4 else ''} u{depth}"


def image_depth(image: Gimp.Image) -> int:
    """8 for 8-bit images, 16 for anything deeper (16/32-bit integer, half, float)."""
    return 8 if image.get_precision() in _EIGHT_BIT else 16


def read_region(
    drawable: Gimp.Drawable,
    x: int,
    y: int,
    width: int,
    height: int,
    depth: int,
    scale: float = 1.0,
) -> RawImage:
    """Pixels of a region in drawable coordinates; ``scale`` < 1 reads a reduced copy.

    Reading reduced lets a size-capped job send only what the daemon will use. A
    plug-in's Gegl buffer has no mipmaps (a scaled ``get`` reads zeros), so GIMP
    scales a copy of the layer in a scratch image instead.
    """
    if scale >= 1.0:
        return _read(drawable, x, y, width, height, depth)
    scratch = Gimp.Image.new_with_precision(
        drawable.get_width(),
        drawable.get_height(),
        Gimp.ImageBaseType.RGB,
        drawable.get_image().get_precision(),
    )
    try:
        scratch.undo_disable()
        copy = Gimp.Layer.new_from_drawable(drawable, scratch)
        scratch.insert_layer(copy, None, 0)
        copy.set_offsets(0, 0)
        copy.scale(
            max(1, round(drawable.get_width() * scale)),
            max(1, round(drawable.get_height() * scale)),
            True,
        )
        x0, y0 = math.floor(x * scale), math.floor(y * scale)
        x1 = min(copy.get_width(), max(x0 + 1, round((x + width) * scale)))
        y1 = min(copy.get_height(), max(y0 + 1, round((y + height) * scale)))
        return _read(copy, x0, y0, x1 - x0, y1 - y0, depth)
    finally:
        scratch.delete()


def _read(drawable: Gimp.Drawable, x: int, y: int, width: int, height: int, depth: int):
    channels = 4 if drawable.has_alpha() else 3
    rect = Gegl.Rectangle.new(x, y, width, height)
    data = drawable.get_buffer().get(
        rect, 1.0, babl_format(channels, depth), Gegl.AbyssPolicy.CLAMP
    )
    return RawImage(width, height, channels, depth, bytes(data))


def read_file(path: str) -> RawImage:
    """Any image file GIMP can open, flattened to 8-bit RGB (for style images)."""
    gfile = Gio.File.new_for_path(path)
    if not gfile.query_exists(None):
        raise ImpastoError(f"style image {path} does not exist", BAD_IMAGE)
    try:
        image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, gfile)
    except Exception as exc:  # GLib.Error from the file loader
        raise ImpastoError(f"GIMP cannot open the style image {path}: {exc}", BAD_IMAGE) from None
    if image is None:
        raise ImpastoError(f"GIMP cannot open the style image {path}", BAD_IMAGE)
    try:
        if image.get_base_type() != Gimp.ImageBaseType.RGB:
            image.convert_rgb()
        layer = image.flatten()
        width, height = layer.get_width(), layer.get_height()
        return _read(layer, 0, 0, width, height, 8)
    finally:
        image.delete()


def write_layer(layer: Gimp.Layer, raw: RawImage) -> None:
    """Fill a layer with the image, scaled to the layer's size when they differ.

    Scaling happens here, in a Gegl graph with clamped edges, rather than with
    ``Layer.scale``, whose edge pixels fade into transparency (a visible seam).
    """
    width, height = layer.get_width(), layer.get_height()
    fmt = babl_format(raw.channels, raw.depth)
    data = bytes(raw.data)  # Gegl cannot read a memoryview (the client's zero-copy frames)
    target = layer.get_buffer()
    if (raw.width, raw.height) == (width, height):
        target.set(Gegl.Rectangle.new(0, 0, width, height), fmt, data)
    else:
        Gegl.init(None)
        source = Gegl.Buffer.new(fmt, 0, 0, raw.width, raw.height)
        source.set(Gegl.Rectangle.new(0, 0, raw.width, raw.height), fmt, data)
        graph = Gegl.Node()
        read = graph.create_child("gegl:buffer-source")
        read.set_property("buffer", source)
        scale = graph.create_child("gegl:scale-size")
        scale.set_property("x", float(width))
        scale.set_property("y", float(height))
        scale.set_property("sampler", Gegl.SamplerType.CUBIC)
        scale.set_property("abyss-policy", Gegl.AbyssPolicy.CLAMP)
        write = graph.create_child("gegl:write-buffer")
        write.set_property("buffer", target)
        read.link(scale)
        scale.link(write)
        write.process()
    target.flush()
    layer.update(0, 0, width, height)
