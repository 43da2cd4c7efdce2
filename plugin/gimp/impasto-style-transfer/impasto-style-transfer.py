#!/usr/bin/env python3
"""Impasto for GIMP 3: Filters > Artistic > Neural Style Transfer…

A thin adapter: GIMP reads the layer and the style images and inserts the frames; the
shared host job driver (impasto.plugin.hostjob) does everything in between, talking
to the Impasto daemon over ZeroMQ. ``impasto install-plugin gimp`` puts the client
next to this file, which is why its folder goes on sys.path first.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# pyzmq/msgpack: only the wheels built for the Python GIMP runs (else its own copies)
from impasto.plugin import binary_deps

binary_deps.activate(os.path.dirname(os.path.abspath(__file__)))

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
import impasto_gimp_args as args  # noqa: E402
from gi.repository import Gimp, GLib  # noqa: E402


def _result(procedure, status, message: str | None = None):
    error = GLib.Error(message) if message else GLib.Error()
    return procedure.new_return_values(status, error)


def _show_dialog(procedure, config) -> bool:
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init(args.PROCEDURE_NAME)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Neural Style Transfer")
    dialog.fill(None)
    probe = os.environ.get(DIALOG_PROBE_ENV)
    if probe:
        GLib.timeout_add(1000, _probe_dialog, dialog, config, probe)
    accepted = dialog.run()
    dialog.destroy()
    return accepted


# For automated UI tests: a JSON file {"set": {argument: value}, "record": path} makes
# the dialog act as an artist would: fill in the values, then press OK; it records
# what the dialog showed (its title and every label) to "record".
DIALOG_PROBE_ENV = "IMPASTO_GIMP_DIALOG_PROBE"


def _probe_dialog(dialog, config, script_path: str) -> bool:
    from gi.repository import Gio, Gtk

    with open(script_path) as src:
        script = json.load(src)
    labels: list[str] = []

    def walk(widget) -> None:
        if isinstance(widget, Gtk.Label) and widget.get_visible() and widget.get_text():
            labels.append(widget.get_text())
        if isinstance(widget, Gtk.Container):
            for child in widget.get_children():
                walk(child)

    walk(dialog)  # before typing: what GIMP remembered from the last run
    for name, value in script.get("set", {}).items():
        if name.startswith("style-file"):
            value = Gio.File.new_for_path(value)
        config.set_property(name, value)
    with open(script["record"], "w") as out:
        json.dump({"title": dialog.get_title(), "labels": labels}, out)
    dialog.response(Gtk.ResponseType.OK)
    return False


def run(procedure, run_mode, image, drawables, config, _data):
    """The procedure's body: dialog (interactive only), job, layers, one undo group."""
    if run_mode == Gimp.RunMode.INTERACTIVE and not _show_dialog(procedure, config):
        return _result(procedure, Gimp.PDBStatusType.CANCEL)
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        return _result(
            procedure, Gimp.PDBStatusType.CALLING_ERROR, "Impasto: select exactly one layer."
        )
    if drawables[0].is_group_layer():
        return _result(
            procedure,
            Gimp.PDBStatusType.CALLING_ERROR,
            "Impasto: select a layer inside the group, not the group itself.",
        )
    try:  # the client needs pyzmq and msgpack in GIMP's own Python
        from impasto_gimp_job import stylise

        from impasto.shared.errors import ImpastoError
    except ImportError as exc:
        return _result(
            procedure,
            Gimp.PDBStatusType.EXECUTION_ERROR,
            f"Impasto: the client cannot be imported in GIMP's Python ({exc}). "
            "Run `impasto install-plugin gimp` to install it with its dependencies.",
        )
    try:
        stylise(image, drawables[0], config)
    except ImpastoError as exc:
        message = f"Impasto: {exc}"
    except Exception as exc:  # a bug: say what failed instead of dying without an answer
        traceback.print_exc()
        message = f"Impasto: internal error: {type(exc).__name__}: {exc}"
    else:
        return _result(procedure, Gimp.PDBStatusType.SUCCESS)
    if run_mode == Gimp.RunMode.INTERACTIVE:
        Gimp.message(message)
    return _result(procedure, Gimp.PDBStatusType.EXECUTION_ERROR, message)


class ImpastoStyleTransfer(Gimp.PlugIn):
    """Registers the one procedure this plug-in offers."""

    def do_query_procedures(self):
        return [args.PROCEDURE_NAME]

    def do_set_i18n(self, _name):
        return False

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("RGB*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_menu_label(args.MENU_LABEL)
        procedure.add_menu_path(args.MENU_PATH)
        procedure.set_documentation(
            "Paint the layer in the style of an image (neural style transfer)",
            "Sends the layer (or the selected part of it) and the style image(s) to the "
            "Impasto daemon, which optimises an image to match the layer's content and the "
            "styles' textures (Gatys et al.). Progress frames and the result come back as "
            "layers, masked by the selection.",
            name,
        )
        procedure.set_attribution("Impasto developers", "MIT", "2026")
        args.register_arguments(procedure)
        return procedure


if __name__ == "__main__":
    Gimp.main(ImpastoStyleTransfer.__gtype__, sys.argv)
