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


def _show_dialog(procedure, config, image=None, drawable=None) -> bool:
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi, Gtk

    GimpUi.init(args.PROCEDURE_NAME)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Neural Style Transfer")
    hint = dialog.get_label("impasto-hint", args.NO_STYLE_HINT, False, False)
    estimate = dialog.get_label(args.ESTIMATE_LABEL, "", False, False)
    _fill_grouped(dialog)
    shown = _watch_estimate(estimate, config, image, drawable)

    def need_a_style(*_ignored) -> None:  # OK only once there is a style image
        ready = bool(args.style_paths(config))
        dialog.set_response_sensitive(Gtk.ResponseType.OK, ready)
        hint.set_visible(not ready)
        ok = dialog.get_widget_for_response(Gtk.ResponseType.OK)
        if ok is not None:
            ok.set_tooltip_text(None if ready else args.NO_STYLE_HINT)

    for name in ("style-file", "style-file-2", "more-style-files"):
        config.connect(f"notify::{name}", need_a_style)
    need_a_style()
    probe = os.environ.get(DIALOG_PROBE_ENV)
    if probe:
        GLib.timeout_add(1000, _probe_dialog, dialog, config, probe)
    accepted = dialog.run()
    if shown is not None:
        GLib.source_remove(shown)
    dialog.destroy()
    return accepted


_ESTIMATE: dict = {}  # the dialog's EstimateWatch, for the probe


def _watch_estimate(label, config, image, drawable) -> int | None:
    """The line under "Size and quality" saying what a run would take: the shared
    EstimateWatch asks the daemon in a thread when an argument it depends on changes,
    a GLib timer shows the answer. Returns the timer's id (None: nothing to estimate,
    or no client in GIMP's Python, which the run itself reports)."""
    if image is None or drawable is None:
        return None
    try:
        import impasto_gimp_job as job

        from impasto.plugin.hostjob import EstimateWatch
    except ImportError:
        return None
    watch = EstimateWatch()
    _ESTIMATE["watch"] = watch

    def ask(*_ignored) -> None:
        watch.request(*job.estimate_request(image, drawable, config))

    def show() -> bool:
        watch.retry()  # no daemon answered: ask again now and then (one may have started)
        label.set_text(watch.text)
        return True

    for name in args.ESTIMATE_ARGUMENTS:
        config.connect(f"notify::{name}", ask)
    ask()
    show()
    return GLib.timeout_add(150, show)


def _fill_grouped(dialog) -> None:
    """Group the arguments as GIMP's own filters do: the everyday choices in titled
    frames, the raw numbers folded away under "Advanced"."""
    from gi.repository import GimpUi

    for name, digits in args.DIGITS.items():  # show 0.05 as 0.05, not 0.1
        dialog.get_widget(name, GimpUi.LabelSpin.__gtype__).set_digits(digits)
    boxes = []
    for key, (title, names) in enumerate(args.DIALOG_GROUPS):
        box, label = f"impasto-box-{key}", f"impasto-title-{key}"
        dialog.fill_box(box, names)
        dialog.get_label(label, title, False, False)
        frame = f"impasto-frame-{key}"
        if title == args.ADVANCED:
            dialog.fill_expander(frame, label, False, box)
        else:
            dialog.fill_frame(frame, label, False, box)
        boxes.append(frame)
    dialog.fill(boxes)


# For automated UI tests: a JSON file {"set": {argument: value}, "record": path} makes
# the dialog act as an artist would: fill in the values, then press OK (Cancel while OK
# is refused); it records what the dialog showed (its title, every visible label,
# whether OK was allowed) to "record". "screenshot" (a PNG path) with "screenshot_set"
# (values typed first) saves a picture of the dialog.
DIALOG_PROBE_ENV = "IMPASTO_GIMP_DIALOG_PROBE"


def _probe_dialog(dialog, config, script_path: str) -> bool:
    from gi.repository import Gdk, GimpUi, Gio, Gtk

    watch = _ESTIMATE.get("watch")
    _ESTIMATE["waited"] = _ESTIMATE.get("waited", 0) + 1
    if watch is not None and watch.busy and _ESTIMATE["waited"] < 60:
        return True  # the estimate line is on its way: look again in a second
    with open(script_path) as src:
        script = json.load(src)
    ok = dialog.get_widget_for_response(Gtk.ResponseType.OK)
    record = {"title": dialog.get_title(), "labels": _shown_labels(dialog)}
    record["ok_before"] = ok.get_sensitive()  # before typing: what GIMP remembered
    spin = dialog.get_widget("content-weight", GimpUi.LabelSpin.__gtype__)
    record["content_weight_text"] = spin.get_spin_button().get_text()

    def type_values(values: dict) -> None:
        for name, value in values.items():
            if name.startswith("style-file"):
                value = Gio.File.new_for_path(value)
            config.set_property(name, value)

    def finish() -> bool:
        type_values(script.get("set", {}))
        record["ok_after"] = ok.get_sensitive()
        with open(script["record"], "w") as out:
            json.dump(record, out)
        dialog.response(Gtk.ResponseType.OK if ok.get_sensitive() else Gtk.ResponseType.CANCEL)
        return False

    def await_estimate() -> bool:  # the picture shows the estimate for the typed values
        if watch is not None and watch.busy:
            return True
        GLib.timeout_add(500, screenshot)  # after the label's 150 ms timer and a redraw
        return False

    def screenshot() -> bool:  # after a redraw; then type the rest
        window = dialog.get_window()
        shot = Gdk.pixbuf_get_from_window(window, 0, 0, window.get_width(), window.get_height())
        shot.savev(script["screenshot"], "png", [], [])
        return finish()

    if script.get("screenshot"):
        type_values(script.get("screenshot_set", {}))
        GLib.timeout_add(100, await_estimate)
    else:
        finish()
    return False


def _shown_labels(widget) -> list[str]:
    """The texts an artist sees, in order (a folded expander shows only its title)."""
    from gi.repository import Gtk

    if isinstance(widget, Gtk.Label):
        return [widget.get_text()] if widget.get_visible() and widget.get_text() else []
    if isinstance(widget, Gtk.Expander) and not widget.get_expanded():
        return _shown_labels(widget.get_label_widget())
    labels = []
    if isinstance(widget, Gtk.Frame) and widget.get_label_widget() is not None:
        labels += _shown_labels(widget.get_label_widget())
    if isinstance(widget, Gtk.Container) and widget.get_visible():
        for child in widget.get_children():
            labels += _shown_labels(child)
    return labels


def _not_one_layer(drawables) -> str | None:
    """Why the selection cannot be stylised, or None when it is one plain layer."""
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        return "Impasto: select exactly one layer."
    if drawables[0].is_group_layer():
        return "Impasto: select a layer inside the group, not the group itself."
    return None


def run(procedure, run_mode, image, drawables, config, _data):
    """The procedure's body: dialog (interactive only), job, layers, one undo group."""
    drawable = drawables[0] if len(drawables) == 1 else None
    if run_mode == Gimp.RunMode.INTERACTIVE and not _show_dialog(
        procedure, config, image, drawable
    ):
        return _result(procedure, Gimp.PDBStatusType.CANCEL)
    all_frames = config.get_property("all-frames")  # every top-level layer, not the selected
    if not all_frames:
        refusal = _not_one_layer(drawables)
        if refusal is not None:
            return _result(procedure, Gimp.PDBStatusType.CALLING_ERROR, refusal)
    try:  # the client needs pyzmq and msgpack in GIMP's own Python
        from impasto_gimp_job import stylise, stylise_frames

        from impasto.shared.errors import ImpastoError
    except ImportError as exc:
        return _result(
            procedure,
            Gimp.PDBStatusType.EXECUTION_ERROR,
            f"Impasto: the client cannot be imported in GIMP's Python ({exc}). "
            "Run `impasto install-plugin gimp` to install it with its dependencies.",
        )
    try:
        if all_frames:
            stylise_frames(image, config)
        else:
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
