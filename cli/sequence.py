"""`impasto stylize-sequence`: an animation, frame by frame, without the texture boiling.

Frames come from image files or one animated GIF and go to a folder of PNGs (written as
each frame finishes, so an interrupted run keeps every finished frame) and/or a GIF with
the source's timing. Runs in this process (the daemon's sequence job is separate work).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from impasto.cli.options_args import options_from_args
from impasto.cli.progress import ProgressBar
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
        help="iterations for every frame after the first (default: 30%% of the first's)",
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
    )


def stylize_sequence_files(
    source: FrameSource,
    styles: list[Path],
    output: Path,
    options,
    sequence: SequenceOptions,
    gif: Path | None = None,
    quiet: bool = False,
) -> int:
    """The whole command; returns the exit code (130 when interrupted, frames kept)."""
    from impasto.daemon.engine import CancelToken, Engine
    from impasto.daemon.engine.sequence import stylise_sequence

    if is_animation_file(output):  # -o anim.gif: only the animation
        gif, folder = output, None
    else:
        folder = output
        folder.mkdir(parents=True, exist_ok=True)
    style_arrays = [load_image(s).to_numpy() for s in styles]
    options.blend_weights(len(style_arrays))
    names, count = source.names(), len(source)
    done: list[RawImage] = []
    written: list[Path] = []
    cancel = CancelToken()
    outcome: dict = {}
    bar = [ProgressBar(quiet=quiet)]

    def on_progress(index: int, p) -> None:
        bar[0].update(p.iteration, p.total, p.losses, p.eta, p.scale, p.n_scales)

    def work() -> None:
        try:
            frames = (frame.to_numpy() for frame in source)
            for item in stylise_sequence(
                Engine(), frames, style_arrays, options, sequence, on_progress, cancel
            ):
                image = RawImage.from_numpy(item.result.image)
                done.append(image)
                if folder is not None:
                    written.append(save_image(image, folder / f"{names[item.index]}.png"))
                bar[0].message(
                    f"frame {item.index + 1}/{count}: {item.result.iterations} iterations "
                    f"in {format_eta(item.result.elapsed)}"
                    + (f", {item.reliable:.0%} of pixels followed" if item.warm else "")
                )
                bar[0] = ProgressBar(quiet=quiet)
        except BaseException as exc:  # handed to the main thread below
            outcome["error"] = exc
        finally:
            finished.set()

    finished = threading.Event()
    interrupted = False
    worker = threading.Thread(target=work, name="impasto-sequence", daemon=True)
    worker.start()
    # Wait on an Event, not Thread.join: a Ctrl-C inside join() can leave the thread
    # looking finished while it still runs.
    try:
        while not finished.wait(0.2):
            pass
    except KeyboardInterrupt:
        interrupted = True
        cancel.cancel()
        while not finished.wait(0.2):
            pass
    # Let the thread end before the interpreter does: exiting while it still unwinds
    # aborted the process ("terminate called without an active exception").
    worker.join()
    bar[0].close()
    if gif is not None and done:
        written.append(write_animation(gif, done, source.durations()))
    if "error" in outcome and not (interrupted and done):
        raise outcome["error"]
    if not quiet:
        where = folder if folder is not None else gif
        verdict = "stopped early" if interrupted else "done"
        print(f"{verdict}: {len(done)}/{count} frames; wrote {where}", file=sys.stderr)
    return 130 if interrupted else 0
