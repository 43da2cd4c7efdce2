"""Frames into layers: a layer group, or an animation stack GIMP can play back.

Each frame lands at the stylised region's offset and size (scaled back up when the job
ran size-capped), with a layer mask from the selection so that pixels outside the
selection stay as they were. All of it happens inside the caller's undo group.
"""

from __future__ import annotations

from impasto_gimp_pixels import write_layer

from impasto.plugin.hostjob import (
    JobFrame,
    Region,
    frame_layer_name,
    group_layer_name,
    insert_index,
    unique_name,
)

from gi.repository import Gimp  # isort: skip


def selection_region(image: Gimp.Image, drawable: Gimp.Drawable) -> Region | None:
    """The drawable's area inside the selection's bounds (all of it without a selection).

    None when the selection does not touch the drawable.
    """
    _ok, dx, dy = drawable.get_offsets()
    x0, y0 = dx, dy
    x1, y1 = dx + drawable.get_width(), dy + drawable.get_height()
    _ok, non_empty, sx0, sy0, sx1, sy1 = Gimp.Selection.bounds(image)
    if not non_empty:
        return Region(x0, y0, x1 - x0, y1 - y0, masked=False)
    x0, y0, x1, y1 = max(x0, sx0), max(y0, sy0), min(x1, sx1), min(y1, sy1)
    if x1 <= x0 or y1 <= y0:
        return None
    return Region(x0, y0, x1 - x0, y1 - y0, masked=True)


def feathered_selection(image: Gimp.Image, radius: float) -> Gimp.Channel | None:
    """Feather the selection in place; returns the saved original to restore (or None)."""
    if radius <= 0 or Gimp.Selection.is_empty(image):
        return None
    saved = Gimp.Selection.save(image)
    Gimp.Selection.feather(image, radius)
    return saved


def restore_selection(image: Gimp.Image, saved: Gimp.Channel | None) -> None:
    if saved is not None:
        image.select_item(Gimp.ChannelOps.REPLACE, saved)
        image.remove_channel(saved)


def _frame_layer(image: Gimp.Image, name: str, region: Region) -> Gimp.Layer:
    return Gimp.Layer.new(
        image,
        name,
        region.width,
        region.height,
        Gimp.ImageType.RGBA_IMAGE,
        100.0,
        Gimp.LayerMode.NORMAL,
    )


def _finish(layer: Gimp.Layer, frame: JobFrame, region: Region) -> None:
    """Pixels, place and mask of a layer already in the image."""
    write_layer(layer, frame.image)
    layer.set_offsets(region.x, region.y)
    if region.masked:
        layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))


def _siblings(image: Gimp.Image, layer: Gimp.Layer) -> list[Gimp.Layer]:
    parent = layer.get_parent()
    return list(parent.get_children() if parent is not None else image.get_layers())


def _all_names(items) -> set[str]:
    names = set()
    for item in items:
        names.add(item.get_name())
        if item.is_group_layer():
            names |= _all_names(item.get_children())
    return names


def insert_frames(
    image: Gimp.Image,
    source: Gimp.Layer,
    frames: list[JobFrame],
    region: Region,
    style_name: str,
    total: int,
    placement: str,
    delay_ms: int,
) -> list[Gimp.Layer]:
    """Insert the frames (oldest lowest, the final one on top) above the source and
    every earlier Impasto result stacked on it, so the newest run is what shows.

    "group": a layer group named for the style, intermediate frames hidden.
    "animation": layers beside the source named "… (NNN ms)", all visible, for
    Filters > Animation > Playback and GIF export (which play top-level layers).
    """
    parent = source.get_parent()
    siblings = _siblings(image, source)  # GIMP lists them top-down
    bottom_up = [layer.get_name() for layer in reversed(siblings)]
    below = insert_index(bottom_up, len(siblings) - 1 - siblings.index(source))
    position = image.get_item_position(siblings[len(siblings) - 1 - below])
    taken = _all_names(image.get_layers())
    group = None
    if placement == "group":
        group = Gimp.GroupLayer.new(image, unique_name(group_layer_name(style_name), taken))
        image.insert_layer(group, parent, position)
        parent, position = group, 0
    layers = []
    for frame in frames:
        if placement == "animation":
            name = frame_layer_name(
                style_name, frame.iteration, total, final=frame.final, delay_ms=delay_ms
            )
        else:
            name = frame.label
        layer = _frame_layer(image, unique_name(name, taken), region)
        taken.add(layer.get_name())
        image.insert_layer(layer, parent, position)  # each new frame goes on top
        _finish(layer, frame, region)
        if group is not None and not frame.final:
            layer.set_visible(False)
        layers.append(layer)
    return ([group] if group is not None else []) + layers
