"""The `impasto` command: parses arguments, dispatches, and turns errors into one line.

Subcommand bodies live in their own modules and are imported only when run, so
`impasto --help` and `impasto daemon status` never load torch.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

from impasto.cli.options_args import add_engine_arguments
from impasto.cli.package_cmd import add_parser as add_package_plugin
from impasto.shared.errors import DAEMON_UNAVAILABLE, ImpastoError

# Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_ERROR = 1  # a problem with the input or the job, explained on stderr
EXIT_USAGE = 2  # wrong command-line arguments (argparse's code)
EXIT_UNAVAILABLE = 3  # no daemon answers where one was required
EXIT_INTERRUPTED = 130  # Ctrl-C; the best image so far was still saved

EPILOG = """\
exit codes: 0 done, 1 error (message on stderr), 2 bad arguments,
            3 daemon not reachable, 130 interrupted (best image so far saved)
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="impasto",
        formatter_class=_formatter,
        description=textwrap.dedent("""\
            Neural style transfer (Gatys, Ecker & Bethge) for painters.

            examples:
              impasto demo                                  # try it on the bundled images
              impasto stylize photo.jpg starry_night.jpg -o out.png
              impasto daemon start                          # keep the model warm for editors
              impasto install-plugin krita
            """),
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_stylize(sub)
    _add_stylize_sequence(sub)
    _add_demo(sub)
    _add_daemon(sub)
    _add_install_plugin(sub)
    add_package_plugin(sub, _formatter)
    _add_keys(sub)
    return parser


def _add_stylize(sub) -> None:
    p = sub.add_parser(
        "stylize",
        help="paint an image in the style of one or more others",
        formatter_class=_formatter,
        description=textwrap.dedent("""\
            Paint CONTENT in the style of STYLE (several styles blend).

            examples:
              impasto stylize photo.jpg starry_night.jpg -o out.png
              impasto stylize photo.jpg a.jpg b.jpg --style-blend 0.7 0.3 -o out.png
              impasto stylize photo.jpg style.jpg --size 1024 --preset fine -o big.png
              impasto stylize photo.jpg style.jpg --preserve-colors luminance -o out.png
              impasto stylize photo.jpg style.jpg --gif progress.gif --frames frames/ -o out.png
              impasto stylize photo.jpg style.jpg --scales 1 --iterations 500   # paper-faithful
              impasto stylize photo.jpg style.jpg --size 2048 --estimate   # time, memory

            It uses a running daemon when one answers (see `impasto daemon start`) and
            runs in this process otherwise. Ctrl-C stops early and still saves the best
            image so far.
            """),
        epilog=EPILOG,
    )
    p.add_argument("content", help="the picture to repaint")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s)")
    p.add_argument(
        "-o", "--output", default="stylized.png", help="output file (default: stylized.png)"
    )
    p.add_argument(
        "--frames", dest="frames_dir", metavar="DIR", help="also save the progress frames here"
    )
    p.add_argument("--gif", metavar="OUT.gif", help="also save the progress as an animated GIF")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="print the plan (scales, tiles, peak memory, time) and exit without running",
    )
    _add_run_arguments(p)
    p.set_defaults(handler="impasto.cli.stylize:run")


def _add_stylize_sequence(sub) -> None:
    from impasto.cli.sequence import add_sequence_arguments

    p = sub.add_parser(
        "stylize-sequence",
        help="paint an animation frame by frame without the texture flickering",
        formatter_class=_formatter,
        description=textwrap.dedent("""\
            Paint the frames of an animation in the style of STYLE (the last argument),
            each frame starting from the previous one moved along the optical flow, and
            held to it where the motion is reliable (Ruder, Dosovitskiy & Brox 2016).

            examples:
              impasto stylize-sequence frames/*.png starry_night.jpg -o out/
              impasto stylize-sequence clip.gif starry_night.jpg -o clip_starry.gif
              impasto stylize-sequence frames/*.png --style a.jpg --style b.jpg \\
                  --style-blend 0.7 0.3 -o out/ --gif out.gif

            Frames are written as they finish; Ctrl-C keeps the finished ones.
            """),
        epilog=EPILOG,
    )
    p.add_argument(
        "paths", nargs="+", metavar="FRAME", help="frame images (or one GIF), then the style"
    )
    p.add_argument(
        "--style", action="append", metavar="FILE", help="style image (repeat to blend styles)"
    )
    p.add_argument(
        "-o",
        "--output",
        default="stylized-frames",
        help="folder for the frames, or a .gif (default: stylized-frames)",
    )
    p.add_argument("--gif", metavar="OUT.gif", help="also write the frames as an animated GIF")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_engine_arguments(p)
    add_sequence_arguments(p)
    p.set_defaults(handler="impasto.cli.sequence:run")


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Where a job runs and every engine option: shared by stylize and demo."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="run in this process")
    where.add_argument("--daemon", action="store_true", help="require a running daemon")
    p.add_argument("--endpoint", help="daemon endpoint (default: the local daemon)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_engine_arguments(p)


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="stylise the bundled Grace Hopper portrait as The Starry Night",
        formatter_class=_formatter,
        description=textwrap.dedent("""\
            Paint the bundled public-domain portrait of Grace Hopper in the style of
            Van Gogh's The Starry Night, and write the picture and a GIF of its progress.

            examples:
              impasto demo
              impasto demo --out-dir /tmp/demo --size 256 --preset draft
            """),
    )
    p.add_argument(
        "--out-dir", default="impasto-demo", help="where to write (default: ./impasto-demo)"
    )
    _add_run_arguments(p)
    p.set_defaults(handler="impasto.cli.demo:run")


def _add_daemon(sub) -> None:
    p = sub.add_parser(
        "daemon",
        help="start, stop or query the background daemon",
        formatter_class=_formatter,
        description=textwrap.dedent("""\
            The daemon keeps VGG19 loaded and serves every editor window, the CLI and
            scripts. It listens on loopback only unless told otherwise.

            examples:
              impasto daemon start
              impasto daemon status
              impasto daemon start --endpoint tcp://0.0.0.0:47815 --curve   # shared GPU box
              impasto daemon start --ray HEAD_IP:6379      # jobs on a Ray cluster's GPUs
              impasto daemon stop
              impasto-daemon --help        # run in the foreground (service managers)
            """),
    )
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--endpoint", help="endpoint to serve or query (default: local)")
    p.add_argument("--device", help="start: device to run on (auto, cpu, cuda, mps)")
    p.add_argument("--curve", action="store_true", help="start: require CURVE authentication")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="start: allow a non-loopback bind without CURVE (trusted networks only)",
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="start: run jobs on a Ray cluster (its head's address, or auto: a private one "
        "on this machine); needs "
        "pip install 'impasto[cluster]'",
    )
    p.add_argument("--ray-actors", type=int, help="start: Ray actors (default: one per GPU)")
    p.add_argument("--json", action="store_true", help="status: print JSON")
    p.set_defaults(handler="impasto.cli.daemon_cmd:run")


def _add_install_plugin(sub) -> None:
    p = sub.add_parser(
        "install-plugin",
        help="install the Krita or GIMP 3 plug-in",
        formatter_class=_formatter,
        description=textwrap.dedent("""\
            Install the editor plug-in for the current user, with the client library
            and its dependencies for the editor's own Python.

            examples:
              impasto install-plugin krita
              impasto install-plugin gimp
              impasto install-plugin krita --check        # is everything in place?
              impasto install-plugin gimp --dest ~/.config/GIMP/3.0/plug-ins
            """),
    )
    p.add_argument("editor", choices=("krita", "gimp"))
    p.add_argument("--dest", help="install here instead of the editor's user folder")
    p.add_argument("--check", action="store_true", help="only report what is missing")
    p.set_defaults(handler="impasto.cli.install_cmd:run")


def _add_keys(sub) -> None:
    p = sub.add_parser(
        "keys",
        help="create CURVE keys for a remote daemon",
        formatter_class=_formatter,
        description=textwrap.dedent("""\
            Create the CURVE key pairs a daemon on another machine needs: the server's
            pair and this client's pair. Give the client's public key to the server
            (authorise it) and the server's public key to the client.

            examples:
              impasto keys                      # create this machine's pairs if missing
              impasto keys --show               # print the public keys
              impasto keys --authorize KEYFILE  # let that client connect to this daemon
            """),
    )
    p.add_argument("--show", action="store_true", help="print the public keys")
    p.add_argument("--authorize", metavar="KEYFILE", help="authorise a client's public key")
    p.add_argument("--force", action="store_true", help="replace existing key pairs")
    p.set_defaults(handler="impasto.cli.keys_cmd:run")


def _resolve(handler: str):
    import importlib

    module, _, func = handler.partition(":")
    return getattr(importlib.import_module(module), func)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from importlib.metadata import version

        print(f"impasto {version('impasto')}")
        return EXIT_OK
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    try:
        return _resolve(args.handler)(args) or EXIT_OK
    except ImpastoError as exc:
        if args.debug:
            raise
        print(f"impasto: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE if exc.code == DAEMON_UNAVAILABLE else EXIT_ERROR
    except KeyboardInterrupt:
        print("impasto: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if args.debug:
            raise
        print(f"impasto: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
