"""`impasto stylize-sequence`: an animation, frame by frame, without the texture boiling.

Frames come from image files or one animated GIF and go to a folder of PNGs (written as
each frame finishes, so an interrupted run keeps every finished frame) and/or a GIF with
the source's timing. Runs on a daemon when one answers (or ``--daemon``: it must), else
in this process (``--local``), as ``impasto stylize`` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from impasto.cli.backends import InOrder, choose_backend
from impasto.cli.options_args import options_from_args
from impasto.cli.progress import ProgressBar
from impasto.cli.stylize import mode_from_args
from impasto.plugin.client import FrameDone, Progress
from impasto.plugin.hostjob import format_eta
from impasto.shared.animation import FrameSource, is_animation_file, write_animation
from impasto.shared.errors import BAD_OPTIONS, ImpastoError
from impasto.shared.imagefile import load_image, save_image
from impasto.shared.options import JobOptions, OptionsError
from impasto.shared.rawimage import RawImage
from impasto.shared.sequence import FLOW_METHODS, SequenceOptions


def add_sequence_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("animation")
    g.add_argument(
        "--temporal-weight",
        type=float,
        metavar="W",
        help="how firmly each frame follows the previous one where the motion is known "
        "(0: warm start only)",
    )
    g.add_argument(
        "--warm-iterations",
        type=int,
        metavar="N",
        help="iterations for every frame after the first (default: half the first's)",
    )
    g.add_argument("--flow", choices=FLOW_METHODS, help="optical flow method (default: dis)")
    g.add_argument(
        "--independent",
        action="store_true",
        help="stylise every frame on its own (flickers; for comparison)",
    )
    g.add_argument(
        "--frame-ms",
        type=int,
        default=100,
        metavar="MS",
        help="display time per frame in a GIF made from separate images (default: 100)",
    )


def sequence_options_from_args(args: argparse.Namespace) -> SequenceOptions:
    values = {
        name: getattr(args, name)
        for name in ("temporal_weight", "warm_iterations", "flow")
        if getattr(args, name, None) is not None
    }
    values["independent"] = bool(getattr(args, "independent", False))
    return SequenceOptions.from_dict(values)


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths]
    styles = [Path(s) for s in args.style] if args.style else paths[-1:]
    frames = paths if args.style else paths[:-1]
    if not frames:
        raise ImpastoError("give the frames (image files or one GIF) and then the style image")
    try:
        sequence = sequence_options_from_args(args)
    except OptionsError as exc:
        raise ImpastoError(str(exc), BAD_OPTIONS) from exc
    return stylize_sequence_files(
        FrameSource(frames, args.frame_ms),
        styles,
        Path(args.output),
        # No progress pictures unless asked for: only each frame's result is kept.
        options_from_args(args, base=JobOptions(frames=0)),
        sequence,
        gif=Path(args.gif) if args.gif else None,
        quiet=args.quiet,
        mode=mode_from_args(args),
        endpoint=args.endpoint,
    )


def stylize_sequence_files(
    source: FrameSource,
    styles: list[Path],
    output: Path,
    options,
    sequence: SequenceOptions,
    gif: Path | None = None,
    quiet: bool = False,
    mode: str = "auto",
    endpoint: str | None = None,
) -> int:
    """The whole command; returns the exit code (130 when interrupted, frames kept)."""
    if is_animation_file(output):  # -o anim.gif: only the animation
        gif, folder = output, None
    else:
        folder = output
        folder.mkdir(parents=True, exist_ok=True)
    style_images = [load_image(s) for s in styles]
    options.blend_weights(len(style_images))
    names, count = source.names(), len(source)
    done: list[RawImage] = []
    written: list[Path] = []
    bar = [ProgressBar(quiet=quiet)]
    backend = choose_backend(mode, endpoint, bar[0].message)

    def on_progress(p: Progress) -> None:
        bar[0].update(p.iteration, p.total, p.losses, p.eta, p.scale, p.n_scales)

    def on_frame(frame: FrameDone) -> None:
        done.append(frame.image)
        if folder is not None:
            written.append(save_image(frame.image, folder / f"{names[frame.index]}.png"))
        bar[0].message(
            f"frame {frame.index + 1}/{count}: {frame.iterations} iterations "
            f"in {format_eta(frame.elapsed)}" + (" (warm start)" if frame.warm else "")
        )
        bar[0] = ProgressBar(quiet=quiet)

    try:
        backend.run_sequence(
            InOrder(source), style_images, options, sequence, on_progress, on_frame
        )
    finally:
        bar[0].close()
        backend.close()
        if gif is not None and done:
            written.append(write_animation(gif, done, source.durations()))
    if not quiet:
        where = folder if folder is not None else gif
        verdict = "stopped early" if backend.interrupted else "done"
        print(f"{verdict}: {len(done)}/{count} frames; wrote {where}", file=sys.stderr)
    return 130 if backend.interrupted else 0
