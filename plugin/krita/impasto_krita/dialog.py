"""The dialog: pick styles and settings, watch progress, cancel; remembers the settings.

Only widgets live here. A QTimer pumps the KritaRun every 100 ms, so Krita's UI keeps
responding while the daemon works; frames are inserted when the job ends (also after
Cancel, which keeps the frames so far).
"""

from __future__ import annotations

import json
import os
from typing import Any

from krita import Krita

from impasto.plugin.hostjob import (
    CHECKING,
    CONNECTED,
    DEFAULT_SETTINGS,
    MAX_PROGRESS_FRAMES,
    STARTING,
    STROKE_SCALE_TOOLTIP,
    UNREACHABLE,
    ConnectionWatch,
    EstimateWatch,
    describe_error,
    format_eta,
    is_result_name,
    options_from_settings,
    sequence_options_from_settings,
)
from impasto.shared import paths
from impasto.shared.errors import ImpastoError
from impasto.shared.options import CHOICES, QUALITY_PRESETS, STRENGTH_PRESETS

from . import qtimage
from .adapter import PLACEMENTS, KritaRun, region_rect
from .animation import KritaAnimationRun, animation_extent, is_animated_paint_layer
from .qt import (  # PyQt6 in Krita 6, PyQt5 in Krita 5
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPixmap,
    QProgressBar,
    QPushButton,
    QSpinBox,
    Qt,
    QTimer,
    QVBoxLayout,
    QWidget,
)

SETTINGS_GROUP = "impasto"
MAX_STYLE_ROWS = 4
FILE_ITEM = "Image file…"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.tif *.tiff *.bmp)"
RECHECK_MS = 5000  # how often an idle dialog looks at the daemon again
# The connection line, as krita-ai-diffusion shows its server: a coloured state word.
STATE_COLOURS = {
    CONNECTED: "#3a3",
    STARTING: "#c80",
    CHECKING: "#888",
}
PLACEMENT_LABELS = {"group": "Layer group", "animation": "Animation (timeline keyframes)"}


class StyleRow(QWidget):
    """One style: a file or a layer of an open document, and its blend weight."""

    def __init__(self, dialog: StyleTransferDialog):
        super().__init__()
        self.dialog = dialog
        self.source = QComboBox()
        self.source.setMinimumWidth(280)
        self.source.activated.connect(self._picked)
        self.weight = QDoubleSpinBox()
        self.weight.setRange(0.0, 100.0)
        self.weight.setSingleStep(0.1)
        self.weight.setValue(1.0)
        self.weight.setToolTip("Blend weight of this style")
        remove = QPushButton("✕")
        remove.setFixedWidth(28)
        remove.setToolTip("Remove this style")
        remove.clicked.connect(lambda: dialog.remove_style_row(self))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.source, 1)
        row.addWidget(QLabel("weight"))
        row.addWidget(self.weight)
        row.addWidget(remove)
        self.fill()

    def fill(self, keep: Any = None) -> None:
        keep = keep if keep is not None else self.value()
        self.source.clear()
        self.source.addItem("(choose a style)", None)
        for path in self.dialog.recent_files:
            self.source.addItem(path.rsplit("/", 1)[-1], path)
            self.source.setItemData(self.source.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        # PyQt6 keeps only the C++ pointer of a QObject in item data (PyQt5 kept the
        # Python object): hold the Node wrappers, or Krita deletes them under the list.
        self.held_nodes = []
        for doc in Krita.instance().documents():
            for node in _layers(doc.rootNode()):  # Impasto's own results are no style
                self.held_nodes.append(node)
                self.source.addItem(f"{_doc_name(doc)} › {node.name()}", node)
        self.source.addItem(FILE_ITEM, FILE_ITEM)
        self.set_value(keep)

    def set_value(self, value: Any) -> None:
        if value is None:
            self.source.setCurrentIndex(0)
            return
        for i in range(self.source.count()):
            if self.source.itemData(i) is value or self.source.itemData(i) == value:
                self.source.setCurrentIndex(i)
                return
        if isinstance(value, str):
            self.source.insertItem(1, value.rsplit("/", 1)[-1], value)
            self.source.setCurrentIndex(1)

    def value(self) -> Any:
        data = self.source.currentData()
        return None if data in (None, FILE_ITEM) else data

    def _picked(self, index: int) -> None:
        if self.source.itemData(index) != FILE_ITEM:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Style image", "", IMAGE_FILTER)
        if path:
            self.dialog.remember_file(path)
            self.set_value(path)
        else:
            self.source.setCurrentIndex(0)


class StyleTransferDialog(QDialog):
    """Settings on top, progress and Start / Cancel / Close at the bottom."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Neural Style Transfer (Impasto)")
        self.run: KritaRun | None = None
        # The last finished preview (a run smaller than its layer) and what it ran on,
        # for "Refine at layer size".
        self.preview_job = None
        self.preview_source: tuple[Any, Any, list[Any], dict[str, Any]] | None = None
        self._run_source: tuple[Any, Any, list[Any], dict[str, Any]] | None = None
        self.last_error: str | None = None
        self.error_box: QMessageBox | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._tick)
        self.watch = ConnectionWatch()
        self.recheck = QTimer(self)
        self.recheck.setInterval(RECHECK_MS)
        self.recheck.timeout.connect(self._check_daemon)
        self.state_timer = QTimer(self)  # shows the watch's answer once the thread has it
        self.state_timer.setInterval(250)
        self.state_timer.timeout.connect(self._show_connection)
        self.estimator = EstimateWatch()  # the time and memory line, asked in a thread
        self.estimate_timer = QTimer(self)  # shows its answer once the thread has it
        self.estimate_timer.setInterval(150)
        self.estimate_timer.timeout.connect(self._show_estimate)
        self._seen_state: str | None = None  # the daemon's state the estimate was asked in
        saved = self._load_settings()
        self.recent_files: list[str] = saved.pop("recent_files", [])
        self._build(saved)

    # -- layout -------------------------------------------------------------------------
    def _build(self, s: dict[str, Any]) -> None:
        root = QVBoxLayout(self)
        styles = QGroupBox("Style images")
        self.style_rows_box = QVBoxLayout(styles)
        self.style_rows: list[StyleRow] = []
        self.add_style = QPushButton("Add another style")
        self.add_style.clicked.connect(lambda: self.add_style_row())
        self.style_rows_box.addWidget(self.add_style)
        weights = s.get("style_blend") or []
        for i, path in enumerate(s.get("styles") or [None]):
            row = self.add_style_row(path)
            if i < len(weights):
                row.weight.setValue(float(weights[i]))
        root.addWidget(styles)

        form = QFormLayout()
        self.strength = _combo(CHOICES["strength"], s["strength"])
        self.strength.setToolTip(
            ", ".join(f"{k}: style weight × {v:g}" for k, v in STRENGTH_PRESETS.items())
        )
        form.addRow("Strength", self.strength)
        self.size = QSpinBox()
        self.size.setRange(0, 8192)
        self.size.setSingleStep(64)
        self.size.setSpecialValueText("Layer size")
        self.size.setSuffix(" px")
        self.size.setValue(int(s.get("size") or 0))
        self.size.setToolTip(
            "Layer size renders at the layer's own pixels (the default: what a painter "
            "keeps). A fixed size caps the long edge for a quick preview, scaled back up; "
            "then Refine at layer size renders the full size starting from it."
        )
        form.addRow("Output size", self.size)
        self.stroke_scale = _combo(CHOICES["stroke_scale"], s.get("stroke_scale") or "auto")
        self.stroke_scale.setToolTip(STROKE_SCALE_TOOLTIP)
        form.addRow("Stroke scale", self.stroke_scale)
        self.quality = _combo(CHOICES["quality"], s["quality"])
        presets = QUALITY_PRESETS.items()
        self.quality.setToolTip(", ".join(f"{k}: {v} iterations" for k, v in presets))
        self.iterations = QSpinBox()
        self.iterations.setRange(0, 100000)
        self.iterations.setSpecialValueText("from quality")
        self.iterations.setValue(int(s.get("iterations") or 0))
        quality_row = QHBoxLayout()
        quality_row.addWidget(self.quality)
        quality_row.addWidget(QLabel("or iterations"))
        quality_row.addWidget(self.iterations)
        form.addRow("Quality", quality_row)
        self.preserve = _combo(CHOICES["preserve_colors"], s["preserve_colors"])
        form.addRow("Preserve colours", self.preserve)
        self.frames = QSpinBox()
        self.frames.setRange(0, MAX_PROGRESS_FRAMES)
        frames = s.get("frames")
        self.frames.setValue(int(frames) if frames is not None else 3)
        self.frames.setToolTip("Progress frames kept besides the final image (hidden layers)")
        form.addRow("Progress frames", self.frames)
        self.placement = QComboBox()
        for key in PLACEMENTS:
            self.placement.addItem(PLACEMENT_LABELS[key], key)
        self.placement.setCurrentIndex(max(0, self.placement.findData(s.get("placement"))))
        self.placement.setToolTip(
            "A layer group (final image on top), or one layer whose keyframes play the run"
        )
        form.addRow("Frames as", self.placement)
        self.whole_animation = QCheckBox("Stylise animation: every keyframe of the layer")
        self.whole_animation.setToolTip(
            "The active layer is animated: stylise all its keyframes, frame to frame "
            "without flicker, into a new animated layer with keyframes at the same times"
        )
        self.whole_animation.toggled.connect(
            lambda _on: self.placement.setEnabled(not self._animation_chosen())
        )
        self.whole_animation.toggled.connect(self._ask_estimate)
        form.addRow(self.whole_animation)
        root.addLayout(form)
        self.estimate = QLabel()
        self.estimate.setWordWrap(True)
        self.estimate.setToolTip(
            "What a run with these settings would take on the daemon's machine: time "
            "(from its last job's speed) and peak memory against its budget"
        )
        root.addWidget(self.estimate)

        self.advanced = QGroupBox("Advanced")
        self.advanced.setCheckable(True)
        self.advanced.setChecked(bool(s.get("advanced")))
        adv = QFormLayout(self.advanced)
        self.use_weights = QCheckBox("Use these weights instead of the strength preset")
        self.use_weights.setChecked(s.get("style_weight") is not None)
        adv.addRow(self.use_weights)
        self.style_weight = _number(s.get("style_weight") or 1.0)
        self.content_weight = _number(s["content_weight"])
        self.tv_weight = _number(s["tv_weight"])
        adv.addRow("Style weight", self.style_weight)
        adv.addRow("Content weight", self.content_weight)
        adv.addRow("Smoothness (TV) weight", self.tv_weight)
        self.seed = QSpinBox()
        self.seed.setRange(-1, 2**31 - 1)
        self.seed.setSpecialValueText("random")
        self.seed.setValue(int(s["seed"]) if s.get("seed") is not None else -1)
        adv.addRow("Seed", self.seed)
        self.endpoint = QLineEdit(s.get("endpoint") or "")
        self.endpoint.setPlaceholderText(_endpoint_placeholder())
        self.endpoint.editingFinished.connect(self._check_daemon)
        adv.addRow("Daemon", self.endpoint)
        self.autostart = QCheckBox("Start a local daemon when none is running")
        self.autostart.setChecked(bool(s.get("autostart", True)))
        adv.addRow(self.autostart)
        root.addWidget(self.advanced)

        self.connection = QLabel()
        self.connection.setTextFormat(Qt.TextFormat.RichText)
        self.connection.setToolTip("The Impasto daemon this dialog sends jobs to")
        root.addWidget(self.connection)

        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumHeight(0)
        root.addWidget(self.preview)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("Ready")
        self.status.setWordWrap(True)
        root.addWidget(self.progress)
        root.addWidget(self.status)

        buttons = QDialogButtonBox()
        self.start_button = buttons.addButton("Stylise", QDialogButtonBox.ButtonRole.AcceptRole)
        self.refine_button = buttons.addButton(
            "Refine at layer size", QDialogButtonBox.ButtonRole.ActionRole
        )
        self.refine_button.setToolTip(
            "Render the last preview again at the layer's own size, starting from the "
            "preview's picture (fewer iterations than a fresh run)"
        )
        self.refine_button.setEnabled(False)
        self.refine_button.clicked.connect(self.refine)
        self.cancel_button = buttons.addButton(
            "Cancel job", QDialogButtonBox.ButtonRole.DestructiveRole
        )
        self.close_button = buttons.addButton("Close", QDialogButtonBox.ButtonRole.RejectRole)
        self.cancel_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        root.addWidget(buttons)
        for signal in (
            self.size.valueChanged,
            self.iterations.valueChanged,
            self.quality.currentIndexChanged,
            self.stroke_scale.currentIndexChanged,
            self.endpoint.textChanged,
        ):
            signal.connect(self._ask_estimate)

    def add_style_row(self, value: Any = None) -> StyleRow:
        row = StyleRow(self)
        row.set_value(value)
        self.style_rows.append(row)
        self.style_rows_box.insertWidget(len(self.style_rows) - 1, row)
        self.add_style.setEnabled(len(self.style_rows) < MAX_STYLE_ROWS)
        return row

    def remove_style_row(self, row: StyleRow) -> None:
        if len(self.style_rows) == 1:
            row.set_value(None)
            return
        self.style_rows.remove(row)
        row.setParent(None)
        row.deleteLater()
        self.add_style.setEnabled(True)

    def refresh_sources(self, animation: bool | None = None) -> None:
        """Re-list the layers of open documents (they change while the dialog is hidden);
        offer "Stylise animation" when the active layer is animated (``animation``:
        tick it or not, None: leave it)."""
        for row in self.style_rows:
            row.fill()
        doc = Krita.instance().activeDocument()
        animated = doc is not None and is_animated_paint_layer(doc.activeNode())
        self.whole_animation.setEnabled(animated)
        if animation is not None:
            self.whole_animation.setChecked(animation and animated)
        self.placement.setEnabled(not self._animation_chosen())

    def _animation_chosen(self) -> bool:
        return self.whole_animation.isEnabled() and self.whole_animation.isChecked()

    def remember_file(self, path: str) -> None:
        self.recent_files = [path, *[p for p in self.recent_files if p != path][:9]]

    # -- settings -------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The dialog's state under the CLI's option names (plus host settings)."""
        styles = [r.value() for r in self.style_rows if r.value() is not None]
        weights = [r.weight.value() for r in self.style_rows if r.value() is not None]
        custom = self.advanced.isChecked() and self.use_weights.isChecked()
        out = {
            "strength": self.strength.currentText(),
            "size": self.size.value() or None,
            "quality": self.quality.currentText(),
            "iterations": self.iterations.value() or None,
            "preserve_colors": self.preserve.currentText(),
            "stroke_scale": self.stroke_scale.currentText(),
            "frames": self.frames.value(),
            "style_blend": weights if len(weights) > 1 else None,
            "style_weight": self.style_weight.value() if custom else None,
            "content_weight": self.content_weight.value(),
            "tv_weight": self.tv_weight.value(),
            "seed": self.seed.value() if self.seed.value() >= 0 else None,
            "endpoint": self.endpoint.text().strip() or None,
            "placement": self.placement.currentData(),
            "autostart": self.autostart.isChecked(),
        }
        return {"styles": styles, **out}

    def _load_settings(self) -> dict[str, Any]:
        text = Krita.instance().readSetting(SETTINGS_GROUP, "last_settings", "")
        saved: dict[str, Any] = {}
        try:
            saved = json.loads(text) if text else {}
        except ValueError:
            saved = {}
        merged = {**DEFAULT_SETTINGS, **{k: v for k, v in saved.items() if k != "styles"}}
        merged["styles"] = [p for p in saved.get("styles") or [] if isinstance(p, str)]
        merged["recent_files"] = saved.get("recent_files") or []
        return merged

    def save_settings(self) -> None:
        s = self.settings()
        s["styles"] = [p for p in s["styles"] if isinstance(p, str)]  # layers don't persist
        s["recent_files"] = self.recent_files
        s["advanced"] = self.advanced.isChecked()
        Krita.instance().writeSetting(SETTINGS_GROUP, "last_settings", json.dumps(s))

    # -- running --------------------------------------------------------------------------
    def start(self) -> None:
        if self.run is not None:
            return
        settings = self.settings()
        styles = settings.pop("styles")
        doc = Krita.instance().activeDocument()
        self.save_settings()
        run_class = KritaAnimationRun if self._animation_chosen() else KritaRun
        self._launch(doc, doc.activeNode() if doc else None, styles, settings, run_class=run_class)

    def refine(self) -> None:
        """Render the last preview at its layer's own size, starting from its picture;
        the results stack on top as any run's do."""
        if self.run is not None or self.preview_job is None or self.preview_source is None:
            return
        self._launch(*self.preview_source, preview=self.preview_job)

    def _launch(self, doc, node, styles, settings, preview=None, run_class=KritaRun) -> None:
        try:
            if preview is not None:
                self.run = KritaRun(doc, node, styles, settings, preview=preview)
            else:
                self.run = run_class(doc, node, styles, settings)
            self.run.start()
        except ImpastoError as exc:
            self.run = None
            self._show_error(describe_error(exc.code, exc.message))
            return
        self._run_source = (doc, node, styles, settings)
        self._set_running(True)
        self.timer.start()
        self._tick()

    def cancel(self) -> None:
        if self.run is not None:
            self.run.cancel()
            self.status.setText(self.run.job.status_text)

    def _tick(self) -> None:
        run = self.run
        if run is None:
            self.timer.stop()
            return
        running = run.pump(0.0)
        job = run.job
        self.progress.setValue(int(job.fraction * 1000))
        text = job.status_text
        if job.eta is not None and running and not job.cancel_requested and "left" not in text:
            text += f" · {format_eta(job.eta)} left"
        self.status.setText(text)
        if job.frames:
            self._show_preview(job.frames[-1].image)
        self._show_connection()
        if running:
            return
        self.timer.stop()
        self.run = None
        if job.can_refine:
            self.preview_job, self.preview_source = job, self._run_source
        self._set_running(False)
        try:
            names = run.insert_frames()
        except ImpastoError as exc:
            self._show_error(exc.message)
            names = []
        finally:
            run.close()
        self._check_daemon()
        self._ask_estimate(fresh=True)  # the daemon has measured its speed now
        if job.error is not None:
            self._show_error(job.error_text or "the job failed")
        elif names:
            self._report_added(run)

    def _report_added(self, run: KritaRun) -> None:
        """The final status line; for keyframes, once Krita has let them be added."""
        job, keyframer = run.job, run.keyframer
        if keyframer is not None and not keyframer.done:
            self.status.setText(f"{job.status_text} · adding keyframes…")
            keyframer.on_done = lambda _k: self._report_added(run)
            return
        added = len(job.frames)
        if keyframer is not None and not keyframer.note:
            text = f"added {added} keyframe{'s' if added != 1 else ''}"
        elif keyframer is not None:
            text = keyframer.note
        else:
            text = f"added {added} layer{'s' if added != 1 else ''}"
        self.status.setText(f"{job.status_text} · {text}")

    def _show_preview(self, image) -> None:
        pixmap = QPixmap.fromImage(qtimage.to_qimage(image))
        self.preview.setPixmap(
            pixmap.scaled(
                240,
                160,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.refine_button.setEnabled(not running and self.preview_job is not None)
        self.cancel_button.setEnabled(running)

    def _show_error(self, message: str) -> None:
        """Status line plus a message box that does not block Krita (open(), not exec)."""
        self.last_error = message
        self.status.setText("Error: " + message.splitlines()[0])
        box = QMessageBox(
            QMessageBox.Icon.Warning, "Impasto", message, QMessageBox.StandardButton.Ok, self
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.error_box = box

    # -- the daemon's state -----------------------------------------------------------------
    def showEvent(self, event) -> None:
        self._check_daemon()
        self._ask_estimate()
        self.recheck.start()
        super().showEvent(event)

    def hideEvent(self, event) -> None:
        self.recheck.stop()
        self.state_timer.stop()
        self.estimate_timer.stop()
        super().hideEvent(event)

    def _check_daemon(self) -> None:
        """Look at the daemon in the background (never while a job owns the line)."""
        if self.run is not None:
            return
        try:
            endpoint = paths.check_endpoint(
                self.endpoint.text().strip() or paths.default_endpoint()
            )
        except ValueError as exc:
            self.connection.setText(f"Daemon: <b>not reachable</b> — {exc}")
            return
        self.watch.check(endpoint)
        self.state_timer.start()
        self._show_connection()

    # -- the estimate before a run ----------------------------------------------------------
    def _ask_estimate(self, *_changed: Any, fresh: bool = False) -> None:
        """Ask (in the background, debounced) what these settings would take on the
        active layer, or its animation; called on every change of size, iterations,
        stroke scale or "Stylise animation", when the daemon connects and after a run
        (``fresh``: even for settings already answered)."""
        doc = Krita.instance().activeDocument()
        node = doc.activeNode() if doc is not None else None
        settings = self.settings()
        n_frames, sequence = 1, None
        try:
            endpoint = paths.check_endpoint(settings["endpoint"] or paths.default_endpoint())
            if self._animation_chosen():
                width, height, n_frames = animation_extent(doc, node)
                sequence = sequence_options_from_settings(settings)
            else:
                width, height = region_rect(doc, node)[2:]
            options: Any = options_from_settings(settings)
        except ImpastoError as exc:
            options, endpoint, width, height = exc, None, 0, 0
        except ValueError:  # an endpoint being typed
            self.estimate.setText("")
            return
        n_styles = max(1, len(settings["styles"]))
        self.estimator.request(
            endpoint, width, height, options, n_styles, n_frames, sequence, fresh=fresh
        )
        self.estimate_timer.start()
        self._show_estimate()

    def _show_estimate(self) -> None:
        self.estimate.setText(self.estimator.text)
        if not self.estimator.busy:
            self.estimate_timer.stop()

    def _show_connection(self) -> None:
        if self.run is not None:
            state, detail = self.run.job.connection, self.run.client.endpoint
        else:
            state, detail = self.watch.state, self.watch.detail
            if state != CHECKING:
                self.state_timer.stop()
                self._estimate_on_connect(state)
            local = self.watch.endpoint and paths.is_loopback(self.watch.endpoint)
            if state == UNREACHABLE and local and self.autostart.isChecked():
                detail += " · Stylise starts one"
        colour = STATE_COLOURS.get(state, "#c33")
        self.connection.setText(f'Daemon: <b style="color:{colour}">{state}</b> — {_html(detail)}')

    def _estimate_on_connect(self, state: str) -> None:
        """Ask for the estimate again once a daemon answers (one the dialog started,
        or the artist did): until then the line only says it waits for one."""
        seen, self._seen_state = self._seen_state, state
        if state == CONNECTED and seen != CONNECTED:
            self._ask_estimate(fresh=seen is not None)

    def closeEvent(self, event) -> None:
        if self.run is not None:
            self.cancel()  # the timer keeps pumping; frames so far are still inserted
        self.save_settings()
        super().closeEvent(event)


def _combo(values: tuple[str, ...], current: str) -> QComboBox:
    box = QComboBox()
    box.addItems(list(values))
    if current in values:
        box.setCurrentText(current)
    return box


def _number(value: float) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setDecimals(4)
    box.setRange(0.0, 1e6)
    box.setValue(float(value))
    return box


def _layers(node: Any):
    for child in node.childNodes():
        if is_result_name(child.name()):
            continue  # an Impasto result and the frames inside it
        if child.type() in ("paintlayer", "grouplayer", "filelayer", "vectorlayer"):
            yield child
        yield from _layers(child)


def _endpoint_placeholder() -> str:
    """What an empty Daemon field means: $IMPASTO_ENDPOINT, else the local default."""
    if os.environ.get(paths.ENDPOINT_ENV):
        return f"{paths.default_endpoint()} (from ${paths.ENDPOINT_ENV})"
    return f"default local daemon ({paths.DEFAULT_ENDPOINT})"


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _doc_name(doc: Any) -> str:
    name = doc.fileName().rsplit("/", 1)[-1] if doc.fileName() else doc.name()
    return name or "untitled"
