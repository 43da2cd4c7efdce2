"""Runs INSIDE Krita as a throwaway pykrita plug-in: carries out a test scenario.

tests/krita_harness.py installs this file as ``impasto_selftest/__init__.py`` next to
the real plug-in and points $IMPASTO_KRITA_SPEC at a JSON scenario. Once Krita's window
exists it opens the image, sets up depth/offset/selection, runs the Impasto plug-in
(the scripting entry or the dialog), dumps facts and raw pixels beside the spec, saves
a .kra, and quits. Every failure is written to the result file, never swallowed.
"""

import faulthandler
import importlib
import json
import os
import sys
import traceback
from typing import Any

import pykrita
from krita import Extension, Krita, Selection

# Krita's own choice of binding (PyQt6 in Krita 6): the same test runs before the
# plug-in is there (the zip import scenario), so not through impasto_krita.qt.
_QT = f"PyQt{getattr(pykrita, 'qt_major_version', lambda: 5)()}"
QEventLoop = importlib.import_module(_QT + ".QtCore").QEventLoop
QTimer = importlib.import_module(_QT + ".QtCore").QTimer
QByteArray = importlib.import_module(_QT + ".QtCore").QByteArray
QApplication = importlib.import_module(_QT + ".QtWidgets").QApplication

SPEC = os.environ.get("IMPASTO_KRITA_SPEC", "")
SRGB16 = "sRGB-elle-V2-g10.icc"


def _tree(node, depth=0):
    out = []
    for child in node.childNodes():
        b = child.bounds()
        out.append(
            {
                "name": child.name(),
                "type": child.type(),
                "depth": depth,
                "bounds": [b.x(), b.y(), b.width(), b.height()],
                "model": child.colorModel(),
                "bit_depth": child.colorDepth(),
                "animated": bool(child.animated()),
                "visible": bool(child.visible()),
                "parent": node.name(),
            }
        )
        out += _tree(child, depth + 1)
    return out


def _dump(path, data):
    with open(path, "wb") as fh:
        fh.write(bytes(data))
    return os.path.basename(path)


def _wait(ms):
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def _scenario(spec, facts, out_dir):
    app = Krita.instance()
    app.setBatchmode(spec.get("batchmode", True))
    doc = app.openDocument(spec["open"])
    if doc is None:
        raise RuntimeError(f"Krita could not open {spec['open']}")
    window = app.activeWindow()
    # Xvfb has no window manager, so nothing activates Krita's window or its view as a
    # desktop would; without that, Krita keeps no "current view" and layer activation
    # (which the plug-in needs for masks and keyframes) does nothing.
    QApplication.setActiveWindow(window.qwindow())
    window.activate()
    view = window.addView(doc)
    window.showView(view)
    app.setActiveDocument(doc)
    doc.waitForDone()
    _wait(200)
    node = doc.topLevelNodes()[0]
    if spec.get("depth") == "U16":
        doc.setColorSpace("RGBA", "U16", doc.colorProfile())
        doc.waitForDone()
    if spec.get("grey"):
        doc.setColorSpace("GRAYA", "U8", "Gray-D50-elle-V2-srgbtrc.icc")
        doc.waitForDone()
    if spec.get("offset"):
        dx, dy = spec["offset"]
        node.move(dx, dy)
        doc.waitForDone()
    if spec.get("canvas"):
        w, h = spec["canvas"]
        doc.resizeImage(0, 0, w, h)
        doc.waitForDone()
    doc.setActiveNode(node)
    if spec.get("animate"):
        _animate(doc, node, spec["animate"], facts)
    if spec.get("selection"):
        x, y, w, h = spec["selection"]
        sel = Selection()
        sel.select(x, y, w, h, 255)
        if spec.get("feather"):
            sel.feather(spec["feather"])
        doc.setSelection(sel)
        sel = doc.selection()
        facts["selection_bounds"] = [sel.x(), sel.y(), sel.width(), sel.height()]
        facts["selection_file"] = _dump(
            os.path.join(out_dir, "selection.bin"),
            sel.pixelData(0, 0, doc.width(), doc.height()),
        )
    doc.refreshProjection()
    doc.waitForDone()
    facts["source_name"] = node.name()
    facts["width"], facts["height"] = doc.width(), doc.height()
    facts["color"] = [doc.colorModel(), doc.colorDepth()]
    facts["before_file"] = _dump(
        os.path.join(out_dir, "before.bin"), doc.pixelData(0, 0, doc.width(), doc.height())
    )
    facts["source_layer_before"] = _dump(
        os.path.join(out_dir, "source_before.bin"),
        node.pixelData(0, 0, doc.width(), doc.height()),
    )

    import impasto_krita.adapter as adapter  # the plug-in under test (sys.path set by it)

    if spec.get("exec"):  # a probe of Krita's API, for developing the plug-in
        exec(spec["exec"], {"doc": doc, "node": node, "facts": facts, "app": app, "wait": _wait})
        return None

    if spec.get("via") == "dialog":
        facts["created"] = _run_dialog(spec, facts, out_dir)
        for extra in spec.get("again", []):  # then runs through the scripting entry
            doc.setActiveNode(node)
            jobs = []
            more = {**spec["options"], **extra}
            facts.setdefault("created_again", []).append(
                adapter.stylize_active_layer(spec["styles"], on_progress=jobs.append, **more)
            )
            facts.setdefault("again_options", []).append(_options_seen(jobs))
    else:
        try:
            styles = [  # "layer:NAME" picks a layer of the open document as a style
                doc.nodeByName(s[len("layer:") :]) if s.startswith("layer:") else s
                for s in spec["styles"]
            ]
            updates, updates_jobs = [], []

            def progress(job):
                updates.append(job.status_text)
                updates_jobs.append(job)
                seen = facts.setdefault("frame_texts", [])
                if job.status_text.startswith("Frame ") and len(seen) < 20:
                    seen.append(job.status_text)

            if spec.get("entry") == "stylize_animation":
                from impasto_krita.animation import stylize_animation as entry
            else:
                entry = adapter.stylize_active_layer
            facts["created"] = entry(styles, on_progress=progress, **spec["options"])
            facts["progress_updates"] = len(updates)
            facts["job_options"] = _options_seen(updates_jobs)
            facts["progress_texts"] = updates[:2] + updates[-2:]
            window = app.activeWindow().qwindow()
            facts["status_bar"] = window.statusBar().currentMessage()
            for extra in spec.get("again", []):  # further runs on the same source layer
                doc.setActiveNode(node)
                more = {**spec["options"], **extra}
                facts.setdefault("created_again", []).append(
                    adapter.stylize_active_layer(styles, **more)
                )
        except Exception as exc:
            facts["error"] = {"type": type(exc).__name__, "message": str(exc)}
            facts["error_code"] = getattr(exc, "code", None)
    return doc, node


def _animate(doc, node, times, facts):
    """Make the source an animated layer with a keyframe at each of ``times`` (holds in
    between), its picture panned 3 px to the right per frame (rows wrap around)."""
    app = Krita.instance()
    w, h = doc.width(), doc.height()
    row = 4 * w  # 8-bit RGBA
    base = bytes(node.pixelData(0, 0, w, h))
    facts["range_before"] = [doc.playBackStartTime(), doc.playBackEndTime()]
    for t in times:
        doc.setCurrentTime(t)
        app.action("add_blank_frame").trigger()
        doc.waitForDone()
        _wait(150)
        shift = (3 * t % w) * 4
        rows = [base[y * row : (y + 1) * row] for y in range(h)]
        panned = b"".join(r[row - shift :] + r[: row - shift] for r in rows)
        node.setPixelData(QByteArray(panned), 0, 0, w, h)
        doc.waitForDone()
    doc.setCurrentTime(0)
    doc.waitForDone()
    facts["source_keys"] = [t for t in range(0, 100) if node.hasKeyframeAtTime(t)]


def _collect(spec, facts, out_dir, doc, node):
    """What the document holds after the run: layer tree, pixel dumps, the saved .kra."""
    doc.refreshProjection()
    doc.waitForDone()
    facts["active_after"] = doc.activeNode().name() if doc.activeNode() else None
    facts["time_range"] = [doc.playBackStartTime(), doc.playBackEndTime(), doc.currentTime()]
    facts["tree"] = _tree(doc.rootNode())
    if spec.get("via") == "dialog":  # the status line once keyframes are in, too
        facts["status_after"] = _DIALOGS[-1].status.text()
    facts["after_file"] = _dump(
        os.path.join(out_dir, "after.bin"), doc.pixelData(0, 0, doc.width(), doc.height())
    )
    facts["source_layer_after"] = _dump(
        os.path.join(out_dir, "source_after.bin"),
        node.pixelData(0, 0, doc.width(), doc.height()),
    )
    layers = {}
    for i, child in enumerate(_all_nodes(doc.rootNode())):
        if child.type() == "paintlayer" and child.name() != node.name():
            frames = [None]
            if child.animated():
                frames = [t for t in range(0, 100) if child.hasKeyframeAtTime(t)]
            for t in frames:
                if t is None:
                    data = child.pixelData(0, 0, doc.width(), doc.height())
                else:
                    data = child.pixelDataAtTime(0, 0, doc.width(), doc.height(), t)
                key = child.name() if t is None else f"{child.name()}@{t}"
                layers[key] = _dump(os.path.join(out_dir, f"layer{i}_{t}.bin"), data)
                layers[f"{child.parentNode().name()}/{key}"] = layers[key]
        if child.type() == "transparencymask":
            facts.setdefault("masks", []).append(child.parentNode().name())
    facts["layer_files"] = layers
    if spec.get("save"):
        facts["saved"] = bool(doc.saveAs(spec["save"]))
        doc.waitForDone()
    doc.setModified(False)


def _options_seen(jobs):
    """What each distinct job was asked to do, in the order they ran."""
    seen = []
    for job in jobs:
        o = job.options
        entry = {
            "stroke_scale": o.stroke_scale,
            "size": o.size,
            "init": o.init,
            "iterations": o.iterations,
            "has_init_image": job.init_image is not None,
        }
        if not seen or seen[-1][1] is not job:
            seen.append((entry, job))
    return [entry for entry, _ in seen]


def _all_nodes(node):
    for child in node.childNodes():
        yield child
        yield from _all_nodes(child)


_DIALOGS: list = []  # the dialog each dialog scenario drove


def _run_dialog(spec, facts, out_dir):
    """The menu path: trigger the action, fill the dialog, press Stylise, wait."""
    app = Krita.instance()
    action = app.action(spec.get("action", "impasto_style_transfer"))
    facts["action_found"] = action is not None
    action.trigger()
    _wait(300)
    ext = next(e for e in app.extensions() if type(e).__name__ == "ImpastoExtension")
    dialog = ext.dialog
    # Kept for _collect: listing Krita's extensions again later, from a timer, crashed
    # Krita 5.3 (a segfault converting them to Python), 5.1.5 did not.
    _DIALOGS.append(dialog)
    facts["remembered_before"] = dialog.settings()
    facts["animation_offered"] = [
        dialog.whole_animation.isEnabled(),
        dialog.whole_animation.isChecked(),
    ]
    opts = spec["options"]
    dialog.style_rows[0].set_value(spec["styles"][0])
    dialog.size.setValue(opts.get("size") or 0)
    if opts.get("stroke_scale"):
        dialog.stroke_scale.setCurrentText(opts["stroke_scale"])
    dialog.iterations.setValue(opts.get("iterations") or 0)
    dialog.frames.setValue(opts.get("frames", 3))
    dialog.placement.setCurrentIndex(dialog.placement.findData(opts.get("placement", "group")))
    dialog.advanced.setChecked(True)
    dialog.endpoint.setText(opts.get("endpoint") or "")
    _wait(200)
    facts["estimate_text"] = _settled_estimate(dialog)
    if spec.get("screenshot"):
        dialog.grab().save(spec["screenshot"])
    ticks, jobs = [], []
    dialog.start_button.click()
    _watch_dialog(dialog, spec, facts, ticks, jobs)
    if spec.get("refine"):  # then "Refine at layer size", as an artist would
        facts["refine_enabled"] = dialog.refine_button.isEnabled()
        facts["preview_status"] = dialog.status.text()
        dialog.refine_button.click()
        facts["refine_running"] = dialog.run is not None and not dialog.refine_button.isEnabled()
        _watch_dialog(dialog, spec, facts, ticks, jobs)
    facts["job_options"] = _options_seen(jobs)
    facts["ticks"] = ticks[-5:]
    facts["tick_count"] = len(ticks)
    _wait(300)  # the connection line after the run
    facts["estimate_after"] = _settled_estimate(dialog)  # asked again: the daemon answers
    facts["status_text"] = dialog.status.text()
    facts["connection_text"] = dialog.connection.text()
    if spec.get("final_screenshot"):
        dialog.grab().save(spec["final_screenshot"])
    dialog.refresh_sources()  # as when the artist opens the dialog again
    facts["style_choices"] = [
        dialog.style_rows[0].source.itemText(i) for i in range(dialog.style_rows[0].source.count())
    ]
    facts["endpoint_placeholder"] = dialog.endpoint.placeholderText()
    facts["dialog_error"] = dialog.last_error
    if dialog.error_box is not None:
        facts["error_box_text"] = dialog.error_box.text()
        if spec.get("error_screenshot"):
            dialog.error_box.grab().save(spec["error_screenshot"])
        dialog.error_box.close()
    dialog.close()
    _wait(100)
    facts["remembered_after"] = json.loads(app.readSetting("impasto", "last_settings", "{}"))
    doc = app.activeDocument()
    return [n.name() for n in _all_nodes(doc.rootNode())]


def _settled_estimate(dialog) -> str:
    """The estimate line once its background request has been answered (up to 30 s)."""
    for _ in range(300):
        if not dialog.estimator.busy and dialog.estimate.text() not in ("", "Estimating…"):
            break
        _wait(100)
    return dialog.estimate.text()


def _watch_dialog(dialog, spec, facts, ticks, jobs):
    """Wait for the dialog's run to end, recording its status lines as they change."""
    cancel_after = spec.get("cancel_after_frames")
    for _ in range(int(spec.get("dialog_timeout", 120) * 20)):
        _wait(50)
        if dialog.run is None:
            break
        job = dialog.run.job
        jobs.append(job)
        ticks.append([job.iteration, round(job.fraction, 3), dialog.status.text()])
        for key, text in (("statuses", dialog.status.text()), ("states", dialog.connection.text())):
            seen = facts.setdefault(key, [])
            if not seen or seen[-1] != text:
                seen.append(text)
        shot = spec.get("progress_screenshot")
        if shot and job.frames and not os.path.exists(shot):
            dialog.grab().save(shot)
        if cancel_after is not None and len(job.frames) >= cancel_after:
            dialog.cancel_button.click()
            cancel_after = None


def _import_zip(spec, facts):
    """What Tools > Scripts > Import Python Plugin from File does after its file dialog:
    Krita's own PluginImporter into the resource folder, then "enable now? yes"."""
    from plugin_importer.plugin_importer import PluginImporter
    from plugin_importer.plugin_importer_extension import PluginImporterExtension

    extension = PluginImporterExtension(Krita.instance())
    resources = extension.get_resources_dir()
    imported = PluginImporter(spec["import_zip"], resources, lambda plugin: True).import_all()
    extension.activate_plugins(imported)
    facts["imported"] = [plugin["name"] for plugin in imported]
    facts["resources_dir"] = resources
    facts["qt_major"] = int(getattr(pykrita, "qt_major_version", lambda: 5)())


def _probe(facts):
    """Which Krita and binding this is, and whether the Impasto plug-in loaded."""
    app = Krita.instance()
    facts["krita_version"] = app.version()
    facts["qt_binding"] = _QT
    facts["plugin_loaded"] = "impasto_krita" in sys.modules
    facts["action_found"] = app.action("impasto_style_transfer") is not None
    if not facts["plugin_loaded"]:
        try:
            importlib.import_module("impasto_krita")
        except Exception:
            facts["plugin_error"] = traceback.format_exc()
    try:  # which pyzmq the plug-in got: its own wheels or Krita's Python's
        facts["zmq_file"] = importlib.import_module("zmq").__file__
    except Exception:
        facts["zmq_error"] = traceback.format_exc()


def _main():
    out_dir = os.path.dirname(SPEC)
    facts: dict[str, Any] = {"ok": False}
    # a crash inside Krita leaves the Python stack of every thread here
    crash_log = open(os.path.join(out_dir, "crash.log"), "w")  # noqa: SIM115 (open till exit)
    faulthandler.enable(crash_log)
    try:
        with open(SPEC) as fh:
            spec = json.load(fh)
        if spec.get("import_zip"):
            state = _import_zip(spec, facts)
        elif spec.get("probe_only"):
            state = _probe(facts)
        else:
            state = _scenario(spec, facts, out_dir)
    except Exception:
        facts["traceback"] = traceback.format_exc()
        return _end(facts, out_dir)
    if state is None:
        facts["ok"] = True
        return _end(facts, out_dir)
    _settle(lambda: _finish(spec, facts, out_dir, state), 200)


def _settle(then, left):
    """Run ``then`` from Krita's main event loop once the plug-in's keyframes are in:
    Krita activates new layers only there, never inside a nested loop."""
    import impasto_krita.adapter as adapter

    if adapter.pending() and left > 0:
        QTimer.singleShot(50, lambda: _settle(then, left - 1))
    else:
        QTimer.singleShot(100, then)  # and let Krita's own queued activation pass


def _finish(spec, facts, out_dir, state):
    try:
        _collect(spec, facts, out_dir, *state)
        facts["ok"] = True
    except Exception:
        facts["traceback"] = traceback.format_exc()
    _end(facts, out_dir)


def _end(facts, out_dir):
    with open(os.path.join(out_dir, "result.json"), "w") as fh:
        json.dump(facts, fh, indent=1, default=str)
    for doc in Krita.instance().documents():
        doc.setModified(False)
        doc.close()
    QTimer.singleShot(100, Krita.instance().action("file_quit").trigger)


class SelfTest(Extension):
    def setup(self):
        pass

    def createActions(self, window):
        if SPEC:
            QTimer.singleShot(200, _main)


if SPEC:
    Krita.instance().addExtension(SelfTest(Krita.instance()))
