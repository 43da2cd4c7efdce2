"""Runs INSIDE gimp-console (python-fu-eval): call the plug-in through the PDB per case.

The host test writes ``params.json`` into a scratch folder and execs this file with
``WORK`` set to that folder (as GIMP sees it). Each case prepares an image the way an
artist would (alpha hole, offset layer, selection, 16-bit precision), calls the
procedure non-interactively, saves the result as XCF and records status and message
in ``run.json`` for the host to assert on.
"""

import json
import traceback

from gi.repository import Gimp, Gio

WORK = globals().get("WORK", "/tmp")
PROCEDURE = "python-fu-impasto-style-transfer"


def gfile(name):
    return Gio.File.new_for_path(f"{WORK}/{name}")


def load(name):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, gfile(name))


def save(image, name):
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, gfile(name), None)


def prepare(case, image):
    """Shape the image as the case asks before the plug-in runs."""
    layer = image.get_layers()[0]
    if case.get("alpha_hole"):
        x, y, w, h = case["alpha_hole"]
        layer.add_alpha()
        image.select_rectangle(Gimp.ChannelOps.REPLACE, x, y, w, h)
        layer.edit_clear()
        Gimp.Selection.none(image)
    if case.get("canvas"):  # grow the canvas: the layer keeps an offset inside it
        width, height, dx, dy = case["canvas"]
        image.resize(width, height, dx, dy)
    if case.get("precision") == "u16":
        image.convert_precision(Gimp.Precision.U16_NON_LINEAR)
    if case.get("ellipse"):
        x, y, w, h = case["ellipse"]
        image.select_ellipse(Gimp.ChannelOps.REPLACE, x, y, w, h)
    return layer


def make_animation(image, offsets):
    """Turn the loaded image into an animation: one frame layer "Frame k (100ms)" per
    offset (a copy of the picture moved right by it), the first frame at the bottom."""
    base = image.get_layers()[0]
    for k, dx in enumerate(offsets, start=1):
        frame = base if k == 1 else base.copy()
        if k > 1:
            image.insert_layer(frame, None, 0)  # later frames go on top
        frame.set_name(f"Frame {k} (100ms)")
        frame.set_offsets(dx, 0)
    return base


def run_case(case, settings):
    if case.get("new_image"):
        width, height = case["new_image"]
        image = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
        layer = Gimp.Layer.new(
            image, "big", width, height, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL
        )
        image.insert_layer(layer, None, 0)
    else:
        image = load(case["source"])
        layer = prepare(case, image)
        if case.get("animation"):
            layer = make_animation(image, case["animation"])
        if case.get("save_source"):
            save(image, case["save_source"])
    procedure = Gimp.get_pdb().lookup_procedure(PROCEDURE)
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    config.set_property("style-file", gfile(case.get("style", settings["style"])))
    if case.get("style2"):
        config.set_property("style-file-2", gfile(case["style2"]))
    for key, value in {**settings["common"], **case.get("settings", {})}.items():
        config.set_property(key, value)
    result = procedure.run(config)
    if case.get("again"):  # a second run on the same layer, as an artist tries another
        for key, value in case["again"].items():
            config.set_property(key, value)
        first = result.index(0).value_nick
        result = procedure.run(config)
        if first != "success":
            result = None
    status = result.index(0) if result is not None else None
    message = result.index(1) if result is not None and result.length() > 1 else None
    record = {
        "status": status.value_nick if status is not None else "first-run-failed",
        "message": message,
        "layers": [item.get_name() for item in image.get_layers()],
        "base_offsets": list(layer.get_offsets()[1:]),
        "selection_after": list(Gimp.Selection.bounds(image)[1:]),
    }
    if case.get("output"):
        save(image, case["output"])
    image.delete()
    return record


def main():
    with open(f"{WORK}/params.json") as src:
        params = json.load(src)
    report = {}
    for name, case in params["cases"].items():
        try:
            report[name] = run_case(case, params)
        except Exception:
            report[name] = {"status": "exception", "message": traceback.format_exc()}
    with open(f"{WORK}/run.json", "w") as out:
        json.dump(report, out, indent=1)


main()
