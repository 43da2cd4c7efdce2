"""`impasto install-plugin krita|gimp [--check] [--dest D]`."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

INSTALLERS = {"krita": "impasto.plugin.install_krita", "gimp": "impasto.plugin.install_gimp"}
NAMES = {"krita": "Krita", "gimp": "GIMP 3"}


def run(args: argparse.Namespace) -> int:
    importlib.import_module("impasto.plugin.daemonctl").record_daemon_command()  # for auto-start
    installer = importlib.import_module(INSTALLERS[args.editor])
    dest = Path(args.dest).expanduser() if args.dest else None
    name = NAMES[args.editor]
    for found in installer.find():  # which editor (and Python) the install is for
        print(f"found {found.describe()}")
    if args.check:
        problems = installer.check(dest)
        if not problems:
            print(f"{name} plug-in: everything in place")
            return 0
        print(f"{name} plug-in: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  - {problem}")
        print(f"fix: impasto install-plugin {args.editor}")
        return 1
    where = installer.install(dest)
    print(f"installed the {name} plug-in into {where}")
    problems = installer.check(dest)
    for problem in problems:
        print(f"  warning: {problem}")
    if args.editor == "krita":
        print("restart Krita, then use Tools > Scripts > Neural Style Transfer")
    else:
        print("restart GIMP, then use Filters > Artistic > Neural Style Transfer")
    return 1 if problems else 0
