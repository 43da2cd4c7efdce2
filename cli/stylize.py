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
) -> int:
    """The whole command; returns the exit code (130 when interrupted, image saved)."""
    if output.suffix.lower() not in SAVE_FORMATS:
        raise ImpastoError(
            f"cannot save {output.name}: use one of {', '.join(SAVE_FORMATS)} as the extension"
        )
    content_image = load_image(content)
    style_images = [load_image(s) for s in styles]
    init_image = load_image(init) if init else None
    options.blend_weights(len(style_images))  # fail early on a blend/style count mismatch

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
