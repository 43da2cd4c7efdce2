"""`impasto stylize`: load the images, run the job, save the picture and its frames."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from impasto.cli.backends import choose_backend
from impasto.cli.frames import FrameRecorder
from impasto.cli.options_args import init_image_path, options_from_args
from impasto.cli.progress import ProgressBar
from impasto.plugin.client import Progress, Result
from impasto.plugin.hostjob import format_eta
from impasto.shared.errors import ImpastoError
from impasto.shared.imagefile import load_image, save_image
from impasto.shared.options import JobOptions
from impasto.shared.rawimage import RawImage

SAVE_FORMATS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    return stylize_files(
        content=Path(args.content),
        styles=[Path(s) for s in args.styles],
        output=Path(args.output),
        options=options,
        mode=mode_from_args(args),
        endpoint=args.endpoint,
        frames_dir=Path(args.frames_dir) if args.frames_dir else None,
        gif=Path(args.gif) if args.gif else None,
        init=init_image_path(args),
        quiet=args.quiet,
        estimate=args.estimate,
    )


def mode_from_args(args: argparse.Namespace) -> str:
    return "local" if args.local else "daemon" if args.daemon else "auto"


def stylize_files(
    content: Path,
    styles: list[Path],
    output: Path,
    options: JobOptions,
    mode: str = "auto",
    endpoint: str | None = None,
    frames_dir: Path | None = None,
    gif: Path | None = None,
    init: Path | None = None,
    quiet: bool = False,
    estimate: bool = False,
) -> int:
    """The whole command; returns the exit code (130 when interrupted, image saved).
    ``estimate``: print the job's plan instead of running it."""
    if output.suffix.lower() not in SAVE_FORMATS:
        raise ImpastoError(
            f"cannot save {output.name}: use one of {', '.join(SAVE_FORMATS)} as the extension"
        )
    content_image = load_image(content)
    style_images = [load_image(s) for s in styles]
    init_image = load_image(init) if init else None
    options.blend_weights(len(style_images))  # fail early on a blend/style count mismatch
    if estimate:
        return print_estimate(content_image, len(style_images), options, mode, endpoint)

    bar = ProgressBar(quiet=quiet)
    recorder = FrameRecorder(frames_dir, gif)
    backend = choose_backend(mode, endpoint, bar.message)

    def on_progress(p: Progress) -> None:
        bar.update(p.iteration, p.total, p.losses, p.eta, p.scale, p.n_scales)
        if p.frame is not None:
            recorder.add(p.iteration, p.frame)

    try:
        result: Result = backend.run(content_image, style_images, options, on_progress, init_image)
    finally:
        bar.close()
        backend.close()
    save_image(result.image, output)
    written = [output, *recorder.finish(result.image, result.iterations)]
    verdict = "stopped early" if result.cancelled else "done"
    if not quiet:
        print(
            f"{verdict}: {result.iterations} iterations in {format_eta(result.elapsed)} "
            f"on {result.device or backend.where}; wrote {', '.join(map(str, written))}",
            file=sys.stderr,
        )
    return 130 if backend.interrupted else 0


def print_estimate(
    content: RawImage, n_styles: int, options: JobOptions, mode: str, endpoint: str | None
) -> int:
    """The job's plan where it would run (a daemon's engine, or this process's), on
    stdout: output size, each scale's size, iterations and tiles, peak memory against
    the budget, and the time."""
    backend = choose_backend(mode, endpoint, lambda note: print(note, file=sys.stderr))
    try:
        info = backend.estimate(content.width, content.height, options, n_styles)
    finally:
        backend.close()
    print("\n".join(plan_lines(info, backend.where)))
    return 0


def plan_lines(info: dict, where: str) -> list[str]:
    scales = info["scales"]
    lines = [
        f"output {info['width']}x{info['height']} px on {info.get('device') or where} "
        f"({where}); {len(scales)} scale{'s' if len(scales) != 1 else ''}:"
    ]
    expected = info.get("finest_expected")
    for k, scale in enumerate(scales, 1):
        tiles = f"tiles of {scale['tile']} px" if scale.get("tile") else "whole"
        count = f"{scale['iterations']} iterations"
        if k == len(scales) and expected is not None:
            count = f"up to {count}, ending once its loss is flat (about {expected} expected)"
        lines.append(f"  {k}. {scale['width']}x{scale['height']} px, {count}, {tiles}")
    gib = 1024**3
    lines.append(
        f"peak memory about {info['memory_estimate'] / gib:.2f} GB of a "
        f"{info['memory_budget'] / gib:.2f} GB budget"
    )
    speed = "at the speed measured there" if info.get("speed_measured") else "a default speed"
    lines.append(f"time about {format_eta(info['seconds'])} ({speed})")
    return lines
