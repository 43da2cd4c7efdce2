"""Command-line flags for every engine option, and their translation into JobOptions.

Flag names are the option names with dashes, so `--style-weight` sets `style_weight`;
the editor plug-ins use the same names as keyword settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from impasto.shared.options import CHOICES, QUALITY_PRESETS, STRENGTH_PRESETS, JobOptions

ORIGINAL_SIZE = 0  # what --size original parses to: keep the content's size


def size_value(text: str) -> int:
    if text.lower() in ("original", "0", "full"):
        return ORIGINAL_SIZE
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must be a number of pixels or 'original', not {text!r}"
        ) from None


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Every JobOptions field as a flag; defaults stay None so presets can apply."""
    quality = ", ".join(f"{k}={v}" for k, v in QUALITY_PRESETS.items())
    strength = ", ".join(f"{k}={v:g}" for k, v in STRENGTH_PRESETS.items())
    g = parser.add_argument_group("picture")
    g.add_argument(
        "--size",
        type=size_value,
        metavar="PX",
        help="long edge of the output in pixels, or 'original' (default: 512)",
    )
    g.add_argument(
        "--preset",
        dest="quality",
        choices=CHOICES["quality"],
        help=f"iteration budget ({quality}; default: standard)",
    )
    g.add_argument(
        "--iterations", type=int, metavar="N", help="total iterations (overrides --preset)"
    )
    g.add_argument(
        "--strength",
        choices=CHOICES["strength"],
        help=f"how strongly the style shows (style weight x {strength}; default: balanced)",
    )
    g.add_argument(
        "--style-blend",
        type=float,
        nargs="+",
        metavar="W",
        help="one weight per style image, e.g. --style-blend 0.7 0.3",
    )
    g.add_argument(
        "--style-scale",
        type=float,
        metavar="F",
        help="style image size relative to the output (smaller = finer strokes; default 1.0)",
    )
    g.add_argument(
        "--preserve-colors",
        choices=CHOICES["preserve_colors"],
        help="keep the content's colours: 'luminance' transfers only brightness, "
        "'match' recolours the style to the content's palette first",
    )
    g.add_argument(
        "--init",
        metavar="content|noise|IMAGE",
        help="start from the content (default), from noise, or from an image file",
    )
    g.add_argument("--seed", type=int, help="random seed for reproducible runs")

    w = parser.add_argument_group("loss weights")
    w.add_argument("--style-weight", type=float, help="raw style weight (overrides --strength)")
    w.add_argument("--content-weight", type=float, help="content weight")
    w.add_argument("--tv-weight", type=float, help="total-variation (smoothness) weight")
    w.add_argument("--style-layer-weights", type=float, nargs="+", metavar="W")

    m = parser.add_argument_group("model and optimiser")
    m.add_argument("--optimizer", choices=CHOICES["optimizer"], help="lbfgs (default) or adam")
    m.add_argument("--learning-rate", type=float, metavar="LR", help="Adam step size")
    m.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, mps")
    m.add_argument(
        "--precision",
        choices=CHOICES["precision"],
        help="network arithmetic: auto (default: bfloat16 where the CPU has it natively, "
        "else float32), float32, bfloat16",
    )
    m.add_argument(
        "--pooling",
        choices=CHOICES["pooling"],
        help="network pooling: avg (default), max, or mix (average, a fifth of the way to max)",
    )
    m.add_argument("--extractor", choices=CHOICES["extractor"], help="feature network")
    m.add_argument(
        "--weights",
        help="'original' (ImageNet VGG19 of the paper, bundled), 'torchvision', or a .pth file",
    )
    m.add_argument("--content-layers", nargs="+", metavar="LAYER")
    m.add_argument("--style-layers", nargs="+", metavar="LAYER")
    m.add_argument(
        "--scales",
        type=int,
        metavar="N",
        help="coarse-to-fine scales (default: automatic; 1 = fixed resolution as in the paper)",
    )
    m.add_argument(
        "--stroke-scale",
        choices=CHOICES["stroke_scale"],
        help="coarse-to-fine look: fine (output size only), medium (from half size), "
        "large (from 128 px: big strokes); default auto picks by size and by how the "
        "first iterations lower the style loss",
    )
    m.add_argument(
        "--memory-budget",
        type=int,
        metavar="MB",
        help="peak memory for the job; larger pictures are tiled or refused; lowers the "
        "engine's budget (default on the CPU: half the RAM, at least 3 GB, at most three "
        "quarters of what is free; GPU: its free memory; raise it with "
        "IMPASTO_MEMORY_BUDGET_MB)",
    )
    m.add_argument(
        "--tile-size", type=int, metavar="PX", help="tile the finest scales at this core size"
    )
    m.add_argument("--time-limit", type=float, metavar="SEC", help="stop after this many seconds")
    m.add_argument(
        "--frame-count",
        dest="frames",
        type=int,
        metavar="N",
        help="progress frames to keep (default: 8)",
    )
    m.add_argument("--frame-size", type=int, metavar="PX", help="long edge cap of the frames")


# argparse destinations that map one-to-one onto JobOptions fields
_FIELDS = (
    "size",
    "quality",
    "iterations",
    "strength",
    "style_blend",
    "style_scale",
    "preserve_colors",
    "seed",
    "style_weight",
    "content_weight",
    "tv_weight",
    "style_layer_weights",
    "optimizer",
    "learning_rate",
    "device",
    "precision",
    "pooling",
    "extractor",
    "weights",
    "content_layers",
    "style_layers",
    "scales",
    "stroke_scale",
    "memory_budget",
    "tile_size",
    "time_limit",
    "frames",
    "frame_size",
)


def options_from_args(args: argparse.Namespace, base: JobOptions | None = None) -> JobOptions:
    """JobOptions from parsed flags; flags left unset keep the base (or default) values."""
    values = (base or JobOptions()).to_dict()
    for name in _FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = None if name == "size" and value == ORIGINAL_SIZE else value
    init = getattr(args, "init", None)
    if init is not None:
        values["init"] = init if init in ("content", "noise") else "image"
    return JobOptions.from_dict(values)


def init_image_path(args: argparse.Namespace) -> Path | None:
    init = getattr(args, "init", None)
    if init is None or init in ("content", "noise"):
        return None
    return Path(init)
