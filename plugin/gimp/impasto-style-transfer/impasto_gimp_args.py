"""The procedure's arguments: registered on the GIMP procedure, read back as settings.

GIMP builds the interactive dialog from these arguments and scripts set them through
the PDB, so this table is the plug-in's whole user-facing surface. ``settings_from_config``
turns a filled config into the host job driver's settings (the CLI's option names);
0 / empty values mean "the preset decides", as the blurbs say.
"""

from __future__ import annotations

from impasto.plugin.hostjob import MAX_PROGRESS_FRAMES, STROKE_SCALE_TOOLTIP
from impasto.shared.options import (
    CHOICES,
    DEFAULT_CONTENT_WEIGHT,
    DEFAULT_TV_WEIGHT,
    MAX_ITERATIONS,
    MAX_SIZE,
)
from impasto.shared.sequence import DEFAULT_TEMPORAL_WEIGHT

from gi.repository import Gimp, Gio, GObject  # isort: skip

PROCEDURE_NAME = "python-fu-impasto-style-transfer"
MENU_PATH = "<Image>/Filters/Artistic/"
MENU_LABEL = "Neural Style Transfer…"
PLACEMENTS = ("group", "animation")
NO_STYLE_HINT = "Choose a style image to start."
ADVANCED = "Advanced"
ESTIMATE_LABEL = "impasto-estimate"  # the time and memory line (hostjob.EstimateWatch)
# The arguments an estimate depends on: a change asks again.
ESTIMATE_ARGUMENTS = (
    "size",
    "stroke-scale",
    "refine-preview",
    "quality",
    "iterations",
    "endpoint",
    "style-file",
    "style-file-2",
    "more-style-files",
    "all-frames",
)
# The dialog's layout, as GIMP's own filters group theirs: what to paint with first,
# then size and quality, the frames, and the raw numbers folded away.
DIALOG_GROUPS = (
    (
        "Style",
        [
            "impasto-hint",
            "style-file",
            "strength",
            "preserve-colors",
            "style-file-2",
            "style-blend",
        ],
    ),
    (
        "Size and quality",
        [
            "size",
            "stroke-scale",
            "refine-preview",
            "quality",
            "iterations",
            "feather",
            ESTIMATE_LABEL,
        ],
    ),
    ("Frames", ["frames", "placement", "frame-delay", "all-frames"]),
    (
        ADVANCED,
        [
            "style-weight",
            "content-weight",
            "tv-weight",
            "seed",
            "temporal-weight",
            "more-style-files",
            "endpoint",
            "timeout",
        ],
    ),
)
DIGITS = {
    "temporal-weight": 1,
    "style-weight": 2,
    "content-weight": 3,
    "tv-weight": 2,
    "timeout": 1,
    "feather": 1,
}
RW = GObject.ParamFlags.READWRITE

_CHOICE_LABELS = {
    "subtle": "Subtle",
    "balanced": "Balanced",
    "strong": "Strong",
    "draft": "Draft (fast)",
    "standard": "Standard",
    "fine": "Fine (slow)",
    "none": "Keep the style's colours",
    "luminance": "Keep the layer's colours (luminance transfer)",
    "match": "Keep the layer's colours (match the style's histogram)",
    "group": "Frames in a layer group",
    "animation": 'Animation frames (layer stack with "(NNN ms)")',
}


# The stroke scale's own labels ("fine" means small strokes here, not the slow preset).
_STROKE_LABELS = {
    "auto": "Auto (by size and picture)",
    "fine": "Fine strokes",
    "medium": "Medium strokes",
    "large": "Large strokes",
}


def _choice(nicks: tuple[str, ...], labels: dict[str, str] | None = None) -> Gimp.Choice:
    labels = labels or _CHOICE_LABELS
    choice = Gimp.Choice.new()
    for index, nick in enumerate(nicks):
        choice.add(nick, index, labels.get(nick, nick), "")
    return choice


def register_arguments(procedure: Gimp.Procedure) -> None:
    """Declare every setting on the procedure (order = the dialog's order)."""
    open_ = Gimp.FileChooserAction.OPEN
    procedure.add_file_argument(
        "style-file", "St_yle image", "The painting whose style to apply", open_, True, None, RW
    )
    procedure.add_file_argument(
        "style-file-2",
        "Second style _image",
        "Optional: blend a second style",
        open_,
        True,
        None,
        RW,
    )
    procedure.add_string_argument(
        "more-style-files",
        "_More style images",
        "Further style image paths, separated by ';' (for scripts)",
        "",
        RW,
    )
    procedure.add_string_argument(
        "style-blend",
        "Style _blend",
        "One weight per style image, e.g. '2,1' (empty: equal weights)",
        "",
        RW,
    )
    procedure.add_choice_argument(
        "strength",
        "S_trength",
        "How strongly the style is applied",
        _choice(CHOICES["strength"]),
        "balanced",
        RW,
    )
    procedure.add_double_argument(
        "style-weight",
        "Raw style _weight",
        "Overrides the strength when above 0",
        0.0,
        1e9,
        0.0,
        RW,
    )
    procedure.add_double_argument(
        "content-weight",
        "Raw co_ntent weight",
        "How closely the layer's content is kept",
        0.0,
        1e9,
        DEFAULT_CONTENT_WEIGHT,
        RW,
    )
    procedure.add_double_argument(
        "tv-weight",
        "Raw smoothness (T_V) weight",
        "Suppresses pixel noise",
        0.0,
        1e9,
        DEFAULT_TV_WEIGHT,
        RW,
    )
    procedure.add_int_argument(
        "size",
        "Output si_ze cap",
        "Long edge the daemon works at, px (0: the layer's own size, the default; a "
        "small size makes a quick preview)",
        0,
        MAX_SIZE,
        0,
        RW,
    )
    procedure.add_choice_argument(
        "stroke-scale",
        "Stroke sca_le",
        STROKE_SCALE_TOOLTIP,
        _choice(CHOICES["stroke_scale"], _STROKE_LABELS),
        "auto",
        RW,
    )
    procedure.add_boolean_argument(
        "refine-preview",
        "_Refine the previous preview at layer size",
        "Render the newest Impasto result on this layer again at the layer's own size, "
        "starting from its picture (half the iterations, one scale): preview small, "
        "render once",
        False,
        RW,
    )
    procedure.add_choice_argument(
        "quality",
        "_Quality",
        "Iteration budget preset",
        _choice(CHOICES["quality"]),
        "standard",
        RW,
    )
    procedure.add_int_argument(
        "iterations",
        "It_erations",
        "Overrides the quality preset when above 0",
        0,
        MAX_ITERATIONS,
        0,
        RW,
    )
    procedure.add_choice_argument(
        "preserve-colors",
        "_Keep colours",
        "Whose colours the result keeps",
        _choice(CHOICES["preserve_colors"]),
        "none",
        RW,
    )
    procedure.add_int_argument(
        "frames",
        "Progress _frames",
        "Progress layers kept besides the final result (hidden in a group)",
        0,
        MAX_PROGRESS_FRAMES,
        3,
        RW,
    )
    procedure.add_choice_argument(
        "placement",
        "Frames _as",
        "A layer group, or a layer stack for Filters > Animation",
        _choice(PLACEMENTS),
        "group",
        RW,
    )
    procedure.add_int_argument(
        "frame-delay",
        "Frame _delay (ms)",
        "Animation frame duration in the layer names",
        10,
        60000,
        200,
        RW,
    )
    procedure.add_boolean_argument(
        "all-frames",
        "Stylise all _frames (animation)",
        "Every top-level layer is an animation frame (Filters > Animation): stylise them "
        "all, frame to frame without flicker, into a new group with one layer per frame "
        "keeping its (NNNms) duration",
        False,
        RW,
    )
    procedure.add_double_argument(
        "temporal-weight",
        "Animation steadiness (temporal _weight)",
        "How closely each frame follows the previous stylised frame where the picture "
        "moved (0: only a warm start)",
        0.0,
        1000.0,
        DEFAULT_TEMPORAL_WEIGHT,
        RW,
    )
    procedure.add_double_argument(
        "feather",
        "Feather selection (_px)",
        "Extra feathering of the selection mask",
        0.0,
        1000.0,
        0.0,
        RW,
    )
    procedure.add_int_argument(
        "seed",
        "Seed (fi_xed if ≥ 0)",
        "Random seed (-1: random)",
        -1,
        2**31 - 1,
        -1,
        RW,
    )
    procedure.add_string_argument(
        "endpoint",
        "Daemon _URL (endpoint)",
        "e.g. tcp://127.0.0.1:5755 (empty: $IMPASTO_ENDPOINT or the local default)",
        "",
        RW,
    )
    procedure.add_double_argument(
        "timeout",
        "_Give up after (s)",
        "Seconds without an answer before giving up",
        0.5,
        3600.0,
        10.0,
        RW,
    )


def style_paths(config: Gimp.ProcedureConfig) -> list[str]:
    """Every style image the config names, in order, as local paths."""
    paths: list[str] = []
    for name in ("style-file", "style-file-2"):
        gfile: Gio.File | None = config.get_property(name)
        if gfile is not None and gfile.get_path():
            paths.append(gfile.get_path())
    more = config.get_property("more-style-files") or ""
    paths += [p.strip() for p in more.replace("\n", ";").split(";") if p.strip()]
    return paths


def settings_from_config(config: Gimp.ProcedureConfig) -> dict:
    """The host job driver's settings (CLI names) from a filled procedure config."""

    def positive(name: str):
        value = config.get_property(name)
        return value if value > 0 else None

    blend = (config.get_property("style-blend") or "").strip()
    seed = config.get_property("seed")
    return {
        "strength": config.get_property("strength"),
        "style_weight": positive("style-weight"),
        "content_weight": config.get_property("content-weight"),
        "tv_weight": config.get_property("tv-weight"),
        "style_blend": blend or None,
        "size": positive("size"),
        "quality": config.get_property("quality"),
        "iterations": positive("iterations"),
        "preserve_colors": config.get_property("preserve-colors"),
        "stroke_scale": config.get_property("stroke-scale"),
        "frames": config.get_property("frames"),
        "seed": seed if seed >= 0 else None,
    }


def sequence_settings_from_config(config: Gimp.ProcedureConfig) -> dict:
    """The animation settings (SequenceOptions names) of an all-frames run."""
    return {"temporal_weight": config.get_property("temporal-weight")}
