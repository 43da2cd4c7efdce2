"""Job options: the one description of a style-transfer job that every part shares.

The CLI builds it from flags, the plugins from their dialogs, the protocol carries it
as a plain dict, and the engine reads it. It imports neither torch nor numpy so the
editor plug-ins can use it. ``JobOptions.from_dict`` is the single place where
untrusted option values are checked; every error names the offending field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from impasto.shared.errors import BAD_OPTIONS, ImpastoError

# Named presets. Strength scales the style weight; quality picks the iteration budget
# (over all of a job's scales: up to 1024 px "auto" spends it at the output size unless
# its probe turns coarse-to-fine, see the engine's schedule.py).
STRENGTH_PRESETS: dict[str, float] = {"subtle": 0.3, "balanced": 1.0, "strong": 3.0}
QUALITY_PRESETS: dict[str, int] = {"draft": 100, "standard": 200, "fine": 400}

DEFAULT_STYLE_WEIGHT = 10.0
# Content weight 0.05 keeps faces and layout readable under a strong style (pastiche's
# default objective, which the bench uses for both tools, is 0.01).
DEFAULT_CONTENT_WEIGHT = 0.05
DEFAULT_TV_WEIGHT = 2.0
DEFAULT_STYLE_LAYERS: tuple[str, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
DEFAULT_CONTENT_LAYERS: tuple[str, ...] = ("conv4_2",)

# Hard ceilings, independent of what a client asks for.
MAX_SIZE = 8192
MAX_ITERATIONS = 100_000
MAX_STYLES = 8
DEFAULT_MAX_PIXELS = 4096 * 4096

CHOICES: dict[str, tuple[str, ...]] = {
    "strength": tuple(STRENGTH_PRESETS),
    "quality": tuple(QUALITY_PRESETS),
    "preserve_colors": ("none", "luminance", "match"),
    "init": ("content", "noise", "image"),
    "optimizer": ("lbfgs", "adam"),
    "pooling": ("avg", "max", "mix"),
    "extractor": ("vgg19", "vgg16", "resnet50", "inception_v3"),
    "precision": ("auto", "float32", "bfloat16"),
    "stroke_scale": ("auto", "fine", "medium", "large"),
}


class OptionsError(ImpastoError, ValueError):
    """An option value that cannot be used; ``field`` names the option."""

    code = BAD_OPTIONS

    def __init__(self, field_name: str, message: str):
        super().__init__(f"option '{field_name}': {message}")
        self.field = field_name


@dataclass
class JobOptions:
    """Everything that controls one job. ``None`` means "derive from the presets"."""

    size: int | None = 512  # long edge of the output, px; None keeps the content's size
    quality: str = "standard"  # iteration budget preset (CLI: --preset)
    iterations: int | None = None  # total iterations over all scales; overrides quality
    strength: str = "balanced"  # style-weight preset
    style_weight: float | None = None  # overrides strength
    content_weight: float = DEFAULT_CONTENT_WEIGHT
    tv_weight: float = DEFAULT_TV_WEIGHT
    style_blend: list[float] | None = None  # one weight per style image
    style_scale: float = 1.0  # style image size relative to the output size
    preserve_colors: str = "none"
    init: str = "content"
    optimizer: str = "lbfgs"
    learning_rate: float | None = None  # Adam step; None = engine default
    seed: int | None = None
    device: str = "auto"
    precision: str = "auto"  # network arithmetic; auto = bfloat16 on CPUs with native bf16
    pooling: str = "avg"
    extractor: str = "vgg19"
    weights: str = "original"  # "original" (pastiche's VGG19), "torchvision", or a .pth path
    content_layers: list[str] = field(default_factory=lambda: list(DEFAULT_CONTENT_LAYERS))
    style_layers: list[str] = field(default_factory=lambda: list(DEFAULT_STYLE_LAYERS))
    style_layer_weights: list[float] | None = None
    scales: int | None = None  # None = from stroke_scale; 1 = fixed resolution
    # The coarse-to-fine look: "fine" optimises at the output size only (the paper),
    # "medium" starts at half the output size, "large" at 128 px (big, loose strokes,
    # the layout may melt); "auto" picks by size and by how the first iterations go
    # (engine/schedule.py). ``scales`` overrides.
    stroke_scale: str = "auto"
    frames: int = 8  # progress frames to emit, evenly spaced (0 = final image only)
    frame_size: int | None = None  # long edge cap of emitted frames
    progress_every: int = 1  # loss reports every N iterations
    time_limit: float | None = None  # seconds; stop with the best image so far
    # Peak memory the job may use, MB; lowers (never raises) the daemon's budget.
    memory_budget: int | None = None
    # Core edge of the tiles the finest scales run in, px; None = tile only when the
    # memory budget requires it (the result is the same either way, tiling.py).
    tile_size: int | None = None

    # -- derived values -------------------------------------------------------------
    def total_iterations(self) -> int:
        return self.iterations if self.iterations is not None else QUALITY_PRESETS[self.quality]

    def effective_style_weight(self) -> float:
        if self.style_weight is not None:
            return self.style_weight
        return DEFAULT_STYLE_WEIGHT * STRENGTH_PRESETS[self.strength]

    def blend_weights(self, n_styles: int) -> list[float]:
        """Per-style weights normalised to sum to one."""
        weights = self.style_blend or [1.0] * n_styles
        if len(weights) != n_styles:
            raise OptionsError(
                "style_blend", f"{len(weights)} weights given for {n_styles} style images"
            )
        total = sum(weights)
        if total <= 0:
            raise OptionsError("style_blend", "weights must not all be zero")
        return [w / total for w in weights]

    # -- (de)serialisation ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> JobOptions:
        """Build and validate options from untrusted data (a decoded message, CLI flags)."""
        return checked_from_dict(cls, data, "options", "option")

    def refinement(self, size: int | None = None, iterations: int | None = None) -> JobOptions:
        """Options that refine a preview to ``size`` (None: the layer's own size).

        The preview's picture is the init image (the caller passes it as ``init_image``;
        the engine resizes it), so the layout is already there: one scale at the output
        size suffices. Half the preview's iterations by default.
        """
        return self.replace(
            size=size,
            init="image",
            stroke_scale="fine",
            scales=None,
            iterations=iterations or max(1, self.total_iterations() // 2),
        )

    def replace(self, **changes: Any) -> JobOptions:
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def validate(self) -> None:
        """Raise OptionsError for the first value that is out of type or range."""
        _int(self, "size", 16, MAX_SIZE, optional=True)
        _int(self, "iterations", 1, MAX_ITERATIONS, optional=True)
        _int(self, "seed", 0, 2**63 - 1, optional=True)
        _int(self, "scales", 1, 8, optional=True)
        _int(self, "frames", 0, 1000)
        _int(self, "frame_size", 16, MAX_SIZE, optional=True)
        _int(self, "progress_every", 1, MAX_ITERATIONS)
        _int(self, "memory_budget", 256, 1 << 24, optional=True)
        _int(self, "tile_size", 64, MAX_SIZE, optional=True)
        _float(self, "style_weight", optional=True)
        _float(self, "content_weight")
        _float(self, "tv_weight")
        _float(self, "style_scale", low=0.05, high=8.0)
        _float(self, "learning_rate", optional=True, positive=True)
        _float(self, "time_limit", optional=True, positive=True)
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise OptionsError(name, f"{value!r} is not one of {', '.join(allowed)}")
        _str(self, "device")
        _str(self, "weights")
        _names(self, "content_layers")
        _names(self, "style_layers")
        if self.style_blend is not None:
            _weights(self, "style_blend", MAX_STYLES)
        if self.style_layer_weights is not None:
            _weights(self, "style_layer_weights", len(self.style_layers))
            if len(self.style_layer_weights) != len(self.style_layers):
                raise OptionsError(
                    "style_layer_weights",
                    f"{len(self.style_layer_weights)} weights for "
                    f"{len(self.style_layers)} style layers",
                )


# _int and _float check one field of any options dataclass (SequenceOptions uses them too).
def _int(opts: object, name: str, low: int, high: int, optional: bool = False) -> None:
    value = getattr(opts, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionsError(name, f"expected an integer, got {value!r}")
    if not low <= value <= high:
        raise OptionsError(name, f"{value} is outside {low}..{high}")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OptionsError(name, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise OptionsError(name, f"{value} is not a finite number")
    return float(value)


def _float(
    opts: object,
    name: str,
    optional: bool = False,
    positive: bool = False,
    low: float = 0.0,
    high: float = 1e12,
) -> None:
    value = getattr(opts, name)
    if value is None and optional:
        return
    number = _number(name, value)
    if positive and number <= 0:
        raise OptionsError(name, f"{number} must be greater than zero")
    if not low <= number <= high:
        raise OptionsError(name, f"{number} is outside {low:g}..{high:g}")
    setattr(opts, name, number)


def _str(opts: JobOptions, name: str) -> None:
    value = getattr(opts, name)
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise OptionsError(name, f"expected a non-empty string, got {value!r}")


def _names(opts: JobOptions, name: str) -> None:
    value = getattr(opts, name)
    if not isinstance(value, list | tuple) or not value or len(value) > 32:
        raise OptionsError(name, "expected a non-empty list of layer names")
    if not all(isinstance(v, str) and v for v in value):
        raise OptionsError(name, "layer names must be non-empty strings")
    setattr(opts, name, list(value))


def _weights(opts: JobOptions, name: str, max_len: int) -> None:
    value = getattr(opts, name)
    if not isinstance(value, list | tuple) or not value or len(value) > max(max_len, 1):
        raise OptionsError(name, f"expected a list of at most {max_len} numbers")
    numbers = [_number(name, v) for v in value]
    if any(v < 0 for v in numbers):
        raise OptionsError(name, "weights must not be negative")
    setattr(opts, name, numbers)


def checked_from_dict(cls: Any, data: Any, what: str, field_word: str) -> Any:
    """An options dataclass from untrusted data: a mapping of known fields only, then the
    class's own ``validate``. ``what`` names the whole value, ``field_word`` one field in
    the errors ("unknown option")."""
    if not isinstance(data, dict):
        raise OptionsError(what, f"expected a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise OptionsError(unknown[0], f"unknown {field_word}")
    opts = cls(**data)
    opts.validate()
    return opts
