"""NeuralStyleTransfer: the seed paper's Python API, in-process on the Impasto engine.

    nst = NeuralStyleTransfer(style_image="starry.jpg", content_image="me.jpg")
    frames = nst.fit_style_transfer(epochs=3, steps_per_epoch=50)
    frames[-1].save("me_starry.png")

Images may be paths, PIL images or arrays (H, W, 3|4; float in 0..1 or uint8/uint16);
``style_image`` may be a list to blend several styles.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from impasto.shared.errors import BAD_IMAGE, BAD_OPTIONS, ImpastoError
from impasto.shared.imagefile import load_image
from impasto.shared.options import DEFAULT_STYLE_LAYERS, JobOptions, OptionsError

# Content layers in the order n_content_layers takes them.
CONTENT_LAYER_ORDER = ("conv4_2", "conv5_2", "conv3_2", "conv2_2", "conv1_2")
_SHARED_ENGINE = None


def _engine():
    """One engine per process so models and style targets are reused across instances."""
    global _SHARED_ENGINE
    if _SHARED_ENGINE is None:
        from .engine import Engine

        _SHARED_ENGINE = Engine()
    return _SHARED_ENGINE


def to_array(image: Any, what: str) -> np.ndarray:
    """A path, bytes, PIL image or array -> float32 (H, W, 3|4) in 0..1."""
    if isinstance(image, str | os.PathLike | bytes):
        return load_image(image if isinstance(image, bytes) else Path(image)).to_numpy()
    if hasattr(image, "mode") and hasattr(image, "size") and hasattr(image, "convert"):
        mode = "RGBA" if "A" in image.mode or "transparency" in image.info else "RGB"
        return np.asarray(image.convert(mode), dtype=np.float32) / 255.0
    if isinstance(image, np.ndarray) or hasattr(image, "__array__"):
        from .engine.imageops import as_rgba_array

        return as_rgba_array(image, what)
    raise ImpastoError(
        f"{what} image must be a path, PIL image or array, not {type(image).__name__}", BAD_IMAGE
    )


def layer_orders(extractor: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Style and content layer names in the order n_style_layers/n_content_layers take them."""
    if extractor in ("vgg19", "vgg16"):
        return DEFAULT_STYLE_LAYERS, CONTENT_LAYER_ORDER
    from .engine.models import EXTRACTOR_DEFAULT_LAYERS

    if extractor not in EXTRACTOR_DEFAULT_LAYERS:
        raise ImpastoError(f"unknown extractor {extractor!r}", BAD_OPTIONS)
    content, style = EXTRACTOR_DEFAULT_LAYERS[extractor]
    return style, content


def _display_available() -> bool:
    if os.name == "nt" or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return True
    import sys

    return sys.platform == "darwin"


class NeuralStyleTransfer:
    """Gatys et al.'s style transfer with the paper's VGG19 (or another extractor)."""

    def __init__(
        self,
        style_image: Any,
        content_image: Any,
        extractor: str = "vgg19",
        n_style_layers: int = 5,
        n_content_layers: int = 1,
        **options: Any,
    ):
        styles = style_image if isinstance(style_image, list | tuple) else [style_image]
        if not styles:
            raise ImpastoError("style_image: give at least one style image", BAD_IMAGE)
        self.styles = [
            to_array(s, f"style {i + 1}" if len(styles) > 1 else "style")
            for i, s in enumerate(styles)
        ]
        self.content = to_array(content_image, "content")
        style_names, content_names = layer_orders(extractor)
        for name, n, names in (
            ("n_style_layers", n_style_layers, style_names),
            ("n_content_layers", n_content_layers, content_names),
        ):
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(names):
                raise ImpastoError(
                    f"{name} must be an integer in 1..{len(names)} for {extractor}, got {n!r}",
                    BAD_OPTIONS,
                )
        options.setdefault("style_layers", list(style_names[:n_style_layers]))
        options.setdefault("content_layers", list(content_names[:n_content_layers]))
        if extractor != "vgg19":  # only VGG19 has the original Caffe weights
            options.setdefault("weights", "torchvision")
        try:
            base = JobOptions(extractor=extractor, **options)
            base.validate()
        except TypeError as exc:
            raise ImpastoError(f"unknown option: {exc}", BAD_OPTIONS) from exc
        except OptionsError as exc:
            raise ImpastoError(str(exc), BAD_OPTIONS) from exc
        self.options = base
        self.result = None  # the last StyleResult

    def fit_style_transfer(
        self,
        epochs: int = 10,
        learning_rate: float | None = None,
        steps_per_epoch: int = 100,
        style_weight: float | None = None,
        content_weight: float | None = None,
        show_image: bool = False,
        show_interval: int = 1,
        var_weight: float | None = None,
        **options: Any,
    ) -> list:
        """Run epochs × steps_per_epoch iterations; return one PIL frame per epoch (+ final).

        ``show_interval`` is in epochs. ``show_image`` opens frames in the system viewer
        where a display exists and is silently skipped where none does.
        """
        from PIL import Image

        for name, value in (
            ("epochs", epochs),
            ("steps_per_epoch", steps_per_epoch),
            ("show_interval", show_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ImpastoError(f"{name} must be a positive integer, got {value!r}", BAD_OPTIONS)
        changes: dict[str, Any] = dict(options)
        changes["iterations"] = epochs * steps_per_epoch
        changes.setdefault("frames", epochs)
        for key, value in (
            ("learning_rate", learning_rate),
            ("style_weight", style_weight),
            ("content_weight", content_weight),
            ("tv_weight", var_weight),
        ):
            if value is not None:
                changes[key] = value
        try:
            opts = self.options.replace(**changes)
        except OptionsError as exc:
            raise ImpastoError(str(exc), BAD_OPTIONS) from exc
        except TypeError as exc:
            raise ImpastoError(f"unknown option: {exc}", BAD_OPTIONS) from exc
        frames: list = []
        shown = [0]
        display = show_image and _display_available()

        def on_progress(p) -> None:
            if p.image is None:
                return
            mode = "RGBA" if p.image.shape[2] == 4 else "RGB"
            frame = Image.fromarray(np.round(p.image * 255).astype(np.uint8), mode)
            frames.append(frame)
            if display and (len(frames) - 1) % show_interval == 0:
                shown[0] += 1
                with contextlib.suppress(Exception):  # no viewer installed: best effort
                    frame.show(title=f"iteration {p.iteration}/{p.total}")

        self.result = _engine().run(self.content, self.styles, opts, on_progress=on_progress)
        # Coarse scales report smaller frames; one size makes them a GIF or video as is.
        size = frames[-1].size if frames else None
        return [f if f.size == size else f.resize(size, Image.Resampling.LANCZOS) for f in frames]


# -- animations ---------------------------------------------------------------------------
def stylize_sequence(
    frames: Any,
    style_image: Any,
    *,
    temporal_weight: float | None = None,
    warm_iterations: int | None = None,
    flow: str = "dis",
    independent: bool = False,
    on_frame: Any = None,
    cancel: Any = None,
    **options: Any,
) -> list:
    """Stylise an animation, each frame following the previous one (Ruder et al. 2016).

        frames = stylize_sequence("clip.gif", "starry.jpg", size=256)
        frames[0].save("clip_starry.gif", save_all=True, append_images=frames[1:])

    ``frames`` is one animated file (GIF) or an iterable of images (paths, PIL images or
    arrays), read one at a time. Returns one PIL image per finished frame;
    ``on_frame(index, image)`` is called as each finishes. A ``CancelToken`` passed as
    ``cancel`` stops the run early, keeping the finished frames. Other keywords are
    JobOptions fields (``size``, ``iterations`` for the first frame, ``strength``...).
    """
    from PIL import Image

    from impasto.shared.animation import FrameSource
    from impasto.shared.sequence import SequenceOptions

    from .engine.sequence import stylise_sequence

    if isinstance(frames, str | os.PathLike):
        source = FrameSource([Path(frames)])
        frames = (f.to_numpy() for f in source)
    styles = style_image if isinstance(style_image, list | tuple) else [style_image]
    style_arrays = [to_array(s, f"style {i + 1}") for i, s in enumerate(styles)]
    seq_values: dict[str, Any] = {"flow": flow, "independent": independent}
    if temporal_weight is not None:
        seq_values["temporal_weight"] = temporal_weight
    if warm_iterations is not None:
        seq_values["warm_iterations"] = warm_iterations
    options.setdefault("frames", 0)
    try:
        opts = JobOptions(**options)
        opts.validate()
        sequence = SequenceOptions.from_dict(seq_values)
    except TypeError as exc:
        raise ImpastoError(f"unknown option: {exc}", BAD_OPTIONS) from exc
    except OptionsError as exc:
        raise ImpastoError(str(exc), BAD_OPTIONS) from exc
    arrays = (to_array(f, f"frame {i + 1}") for i, f in enumerate(frames))
    done: list = []
    for item in stylise_sequence(_engine(), arrays, style_arrays, opts, sequence, cancel=cancel):
        image = item.result.image
        mode = "RGBA" if image.shape[2] == 4 else "RGB"
        picture = Image.fromarray(np.round(image * 255).astype(np.uint8), mode)
        done.append(picture)
        if on_frame is not None:
            on_frame(item.index, picture)
    return done
