"""Runs INSIDE gimp-console (python-fu-eval): reload saved XCFs and dump what they hold.

For each XCF named in ``inspect.json`` it writes the layer tree (names, groups,
visibility, offsets, sizes, masks) to ``inspect-out.json`` and the raw pixels of every
layer, mask and of the flattened composite to ``<xcf>.<n>.rgba`` / ``.mask`` /
``.composite.rgba`` files, so the host compares pixels with numpy.
"""

import json

import gi

gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

WORK = globals().get("WORK", "/tmp")


def dump(drawable, path, fmt, canvas=None):
    """Raw pixels of a drawable, or of the canvas area (w, h) it covers, transparent around."""
    if canvas is None:
        rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    else:
        _ok, x, y = drawable.get_offsets()
        rect = Gegl.Rectangle.new(-x, -y, *canvas)
    data = drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.NONE)
    with open(path, "wb") as out:
        out.write(bytes(data))


def walk(image, items, stem, counter, out):
    for item in items:
        index = counter[0]
        counter[0] += 1
        entry = {
            "index": index,
            "name": item.get_name(),
            "group": item.is_group_layer(),
            "visible": item.get_visible(),
            "offsets": list(item.get_offsets()[1:]),
            "size": [item.get_width(), item.get_height()],
            "mask": item.get_mask() is not None,
        }
        if item.is_group_layer():
            entry["children"] = []
            walk(image, item.get_children(), stem, counter, entry["children"])
        else:
            dump(item, f"{WORK}/{stem}.{index}.rgba", "R'G'B'A u8")
            if item.get_mask() is not None:
                dump(item.get_mask(), f"{WORK}/{stem}.{index}.mask", "Y u8")
        out.append(entry)


def inspect(name):
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(f"{WORK}/{name}"))
    layers = []
    walk(image, image.get_layers(), name, [0], layers)
    info = {
        "size": [image.get_width(), image.get_height()],
        "precision": image.get_precision().value_nick,
        "layers": layers,
    }
    image.undo_disable()
    flat = image.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
    canvas = (image.get_width(), image.get_height())
    dump(flat, f"{WORK}/{name}.composite.rgba", "R'G'B'A u8", canvas)
    image.delete()
    return info


def main():
    with open(f"{WORK}/inspect.json") as src:
        names = json.load(src)
    info = {n: inspect(n) for n in names}
    with open(f"{WORK}/inspect-out.json", "w") as out:
        json.dump(info, out, indent=1)


main()
