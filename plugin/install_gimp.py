"""`impasto install-plugin gimp`: put the GIMP 3 plug-in where GIMP finds it.

GIMP 3 runs ``plug-ins/<name>/<name>.py`` (executable) with its own Python, which may
be another version than ours (3.13 in Debian 13's GIMP 3.0, 3.14 in sid's 3.2). Each
GIMP series keeps its own folder (``GIMP/3.0``, ``GIMP/3.2``). So the installer finds the
GIMP installed here and the python3 that has its bindings, lays the plug-in out in that
series' folder with the client vendored, and, when that Python cannot import pyzmq and
msgpack, adds wheels for exactly that Python in a tagged folder.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from impasto.plugin import binary_deps, installed_editors
from impasto.plugin.installed_editors import Found
from impasto.plugin.vendor import (
    check_runtime_deps,
    check_vendored,
    provide_runtime_deps,
    vendor_client,
)
from impasto.shared.errors import ImpastoError

PLUGIN_NAME = "impasto-style-transfer"
SOURCE_DIR = Path(__file__).resolve().parent / "gimp" / PLUGIN_NAME
PYTHON_ENV = "IMPASTO_GIMP_PYTHON"  # the command that runs GIMP's Python, e.g. "python3.13"
GIMP_CONSOLES = tuple(f"usr/bin/gimp-console-{series}" for series in installed_editors.GIMP_SERIES)


def default_dest(found: Found | None = None) -> Path:
    """The plug-ins folder of the GIMP found here (or of GIMP 3.0 when none is)."""
    if found is not None:
        return found.plugin_dir
    return installed_editors.gimp_config_dir("3.0") / "plug-ins"


def find() -> list[Found]:
    return installed_editors.find_gimp()


def _chroot_python(dest: Path) -> list[str] | None:
    """A dest inside another root file system with GIMP 3 (a chroot): that root's python3."""
    for root in Path(dest).resolve().parents:
        if root != Path("/") and any((root / c).exists() for c in GIMP_CONSOLES):
            return ["chroot", str(root), "python3"]
    return None


def gimp_python(dest: Path, found: Found | None = None) -> list[str] | None:
    """The command that runs the Python GIMP will use for a plug-in in ``dest``.

    $IMPASTO_GIMP_PYTHON wins; then a chroot holding ``dest``; then the python3 that
    the found GIMP runs its plug-ins with (one with GIMP's bindings, not merely the
    first on PATH). None when GIMP's Python cannot be run from outside.
    """
    if os.environ.get(PYTHON_ENV):
        return shlex.split(os.environ[PYTHON_ENV])
    return _chroot_python(dest) or (found.python if found is not None else None)


def lay_out(dest: Path) -> Path:
    """Copy the plug-in and the vendored client into ``dest``; returns the plug-in folder."""
    if not (SOURCE_DIR / f"{PLUGIN_NAME}.py").is_file():
        raise ImpastoError(f"the GIMP plug-in sources are missing from {SOURCE_DIR}")
    target = Path(dest) / PLUGIN_NAME
    try:
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(SOURCE_DIR.glob("*.py")):
            shutil.copy2(path, target / path.name)
        (target / f"{PLUGIN_NAME}.py").chmod(0o755)
        # GIMP re-queries a plug-in's procedures (its arguments, from
        # impasto_gimp_args.py) only when the main file's mtime changes: copy2 kept the
        # source's, so an update that changed only the arguments went unseen.
        os.utime(target / f"{PLUGIN_NAME}.py")
        vendor_client(target)
    except OSError as exc:
        raise ImpastoError(f"cannot install the GIMP plug-in into {target}: {exc}") from None
    return target


def install(
    dest: Path | None = None, python: list[str] | None = None, wheelhouse: Path | None = None
) -> Path:
    """Install into ``dest`` (a plug-ins folder); returns the plug-in's own folder."""
    found = next(iter(find()), None)
    dest = Path(dest) if dest is not None else default_dest(found)
    python = python or gimp_python(dest, found)
    bundled = installed_editors.wheels_plan("GIMP 3", found, python, PYTHON_ENV)
    target = lay_out(dest)
    problems = provide_runtime_deps(target, python, bundled, wheelhouse)
    if problems:
        raise ImpastoError(
            f"installed the GIMP plug-in into {target}, but GIMP's Python cannot use it: "
            + "; ".join(problems)
        )
    return target


def check(dest: Path | None = None, python: list[str] | None = None) -> list[str]:
    """What is missing or outdated in an installation (empty = all in place)."""
    found = next(iter(find()), None)
    dest = Path(dest) if dest is not None else default_dest(found)
    python = python or gimp_python(dest, found)
    problems = []
    if found is None and python is None:
        problems.append(installed_editors.not_found_message("GIMP 3"))
    elif found is not None:
        problems += found.notes
    target = dest / PLUGIN_NAME
    main = target / f"{PLUGIN_NAME}.py"
    if not main.is_file():
        return [*problems, f"the GIMP plug-in is not installed in {target}"]
    if not os.access(main, os.X_OK):
        problems.append(f"{main} is not executable (GIMP 3 skips it)")
    for path in sorted(SOURCE_DIR.glob("*.py")):
        installed = target / path.name
        if not installed.is_file():
            problems.append(f"missing {installed}")
        elif installed.read_bytes() != path.read_bytes():
            problems.append(f"{installed} is outdated; run `impasto install-plugin gimp`")
    problems += check_vendored(target)
    if not problems and python:
        problems += check_runtime_deps(target, python)
    elif not problems and found is not None and (bundle := found.wheels_target()) is not None:
        tag = bundle.tag
        if tag not in binary_deps.bundled_tags(str(target)):
            problems.append(f"no wheels for {found.describe()} ({tag})")
    return problems
