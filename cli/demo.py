"""`impasto demo`: the bundled portrait of Grace Hopper painted as The Starry Night."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from impasto.cli.options_args import options_from_args
from impasto.cli.stylize import mode_from_args, stylize_files

CONTENT = "grace_hopper.jpg"
STYLE = "starry_night.jpg"


def asset(name: str) -> Path:
    """Path of a bundled public-domain image (see cli/assets/CREDITS.md)."""
    return Path(str(resources.files("impasto.cli") / "assets" / name))


def run(args: argparse.Namespace) -> int:
    out_dir = Path(args.out_dir)
    options = options_from_args(args)
    return stylize_files(
        content=asset(CONTENT),
        styles=[asset(STYLE)],
        output=out_dir / "grace_hopper_starry_night.png",
        options=options,
        mode=mode_from_args(args),
        endpoint=args.endpoint,
        frames_dir=out_dir / "frames",
        gif=out_dir / "grace_hopper_starry_night.gif",
        quiet=args.quiet,
    )
