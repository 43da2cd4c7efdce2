"""Runs INSIDE the GUI GIMP (python-fu-eval): the procedure run interactively, per step.

GIMP shows the plug-in's dialog, built from the procedure's arguments; the plug-in's
dialog probe (IMPASTO_GIMP_DIALOG_PROBE, pointing at WORK/probe.json which this script
rewrites per step) fills in the step's values as an artist would and presses OK (or
Cancel while OK is refused). A step that types nothing shows what GIMP remembered. Results go to
``dialog.json``.
"""

import json

from gi.repository import Gimp, Gio

WORK = globals().get("WORK", "/tmp")
with open(f"{WORK}/params.json") as src:
    params = json.load(src)
procedure = Gimp.get_pdb().lookup_procedure("python-fu-impasto-style-transfer")
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(f"{WORK}/content.png"))
layer = image.get_layers()[0]
report = []
for index, values in enumerate(params["steps"]):
    values = dict(values)
    probe = {"set": values, "record": f"{WORK}/dialog-{index}.json"}
    for key in ("screenshot", "screenshot_set"):
        if key in values:
            probe[key] = values.pop(key)
    with open(f"{WORK}/probe.json", "w") as out:
        json.dump(probe, out)
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    result = procedure.run(config)
    report.append(
        {
            "status": result.index(0).value_nick,
            "message": result.index(1) if result.length() > 1 else None,
            "layers": [item.get_name() for item in image.get_layers()],
            "visible": [item.get_visible() for item in image.get_layers()],
        }
    )
with open(f"{WORK}/dialog.json", "w") as out:
    json.dump(report, out, indent=1)
image.delete()
