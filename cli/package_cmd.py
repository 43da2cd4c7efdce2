"""`impasto package-plugin krita|gimp --platform linux|windows|macos [--python X.Y]`."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

PLATFORMS = ("linux", "windows", "macos")
NEXT_STEP = {
    "krita": (
        "in Krita: Tools > Scripts > Import Python Plugin from File..., pick {zip}, "
        "answer Yes to enable it, restart Krita"
    ),
    "gimp": (
        "unpack {zip} into GIMP's plug-ins folder (Edit > Preferences > Folders > "
        "Plug-ins shows it), restart GIMP"
    ),
}


def add_parser(sub, formatter) -> None:
    """The subcommand's arguments (registered by cli/main.py)."""
    p = sub.add_parser(
        "package-plugin",
        help="build a plug-in zip for Krita or GIMP 3 on any platform",
        formatter_class=formatter,
        description=textwrap.dedent("""\
            Build a zip of the editor plug-in with the client and the pyzmq/msgpack
            wheels for the Python that editor bundles on that platform (every Python
            of the releases listed in docs/editor-pythons.md unless --python is given).
            Krita installs the zip with Tools > Scripts > Import Python Plugin from
            File; for GIMP, unpack it into the plug-ins folder. Needs PyPI (or
            --wheelhouse) for the wheels.

            examples:
              impasto package-plugin krita --platform windows
              impasto package-plugin krita --platform macos --python 3.13
              impasto package-plugin gimp --platform linux --out dist/
            """),
    )
    p.add_argument("editor", choices=("krita", "gimp"))
    p.add_argument("--platform", required=True, choices=PLATFORMS)
    p.add_argument(
        "--python",
        action="append",
        metavar="X.Y",
        help="the editor's Python version (repeat for several; default: every one listed)",
    )
    p.add_argument("--out", default=".", help="folder for the zip (default: here)")
    p.add_argument("--wheelhouse", help="take the wheels only from this folder of .whl files")
    p.set_defaults(handler="impasto.cli.package_cmd:run")


def run(args: argparse.Namespace) -> int:
    from impasto.plugin import package_zip

    wheelhouse = Path(args.wheelhouse).expanduser() if args.wheelhouse else None
    out, targets = package_zip.build(
        args.editor, args.platform, Path(args.out).expanduser(), args.python, wheelhouse
    )
    print(f"built {out} for Python {', '.join(t.version for t in targets)} ({args.platform})")
    print("next: " + NEXT_STEP[args.editor].format(zip=out.name))
    return 0
