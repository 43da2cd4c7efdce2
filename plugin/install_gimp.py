"""`impasto install-plugin gimp`: put the GIMP 3 plug-in where GIMP finds it.

GIMP 3 runs ``plug-ins/<name>/<name>.py`` (executable) with its own Python, which may
be another version than ours (3.13 on Debian 13). So next to the plug-in we vendor the
client and, when GIMP's Python cannot import pyzmq and msgpack, matching wheels.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from impasto.plugin.vendor import (
    check_runtime_deps,
    check_vendored,
    ensure_runtime_deps,
    vendor_client,
)
from impasto.shared.errors import ImpastoError

PLUGIN_NAME = "impasto-style-transfer"
SOURCE_DIR = Path(__file__).resolve().parent / "gimp" / PLUGIN_NAME
PYTHON_ENV = "IMPASTO_GIMP_PYTHON"  # the command that runs GIMP's Python, e.g. "python3.13"
GIMP_CONSOLE = "usr/bin/gimp-console-3.0"


def default_dest() -> Path:
    """The user's GIMP 3 plug-ins folder on this platform."""
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home())) / "GIMP" / "3.0" / "plug-ins"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "GIMP" / "3.0" / "plug-ins"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "GIMP" / "3.0" / "plug-ins"


def gimp_python(dest: Path) -> list[str]:
    """The command that runs the Python GIMP will use for a plug-in in ``dest``.

    $IMPASTO_GIMP_PYTHON wins; a dest inside another root file system with GIMP 3 (a
    chroot) means that root's python3; otherwise the python3 on PATH.
    """
    if os.environ.get(PYTHON_ENV):
        return shlex.split(os.environ[PYTHON_ENV])
    for root in Path(dest).resolve().parents:
        if root != Path("/") and (root / GIMP_CONSOLE).exists():
            return ["chroot", str(root), "python3"]
    return ["python3"]


def install(dest: Path | None = None, python: list[str] | None = None) -> Path:
    """Install into ``dest`` (a plug-ins folder); returns the plug-in's own folder."""
    dest = Path(dest) if dest is not None else default_dest()
    if not (SOURCE_DIR / f"{PLUGIN_NAME}.py").is_file():
        raise ImpastoError(f"the GIMP plug-in sources are missing from {SOURCE_DIR}")
    target = dest / PLUGIN_NAME
    try:
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(SOURCE_DIR.glob("*.py")):
            shutil.copy2(path, target / path.name)
        (target / f"{PLUGIN_NAME}.py").chmod(0o755)
        vendor_client(target)
    except OSError as exc:
        raise ImpastoError(f"cannot install the GIMP plug-in into {target}: {exc}") from None
    problems = ensure_runtime_deps(target, python or gimp_python(dest))
    if problems:
        raise ImpastoError(
            f"installed the GIMP plug-in into {target}, but GIMP's Python cannot use it: "
            + "; ".join(problems)
        )
    return target


def check(dest: Path | None = None, python: list[str] | None = None) -> list[str]:
    """What is missing or outdated in an installation (empty = all in place)."""
    dest = Path(dest) if dest is not None else default_dest()
    target = dest / PLUGIN_NAME
    main = target / f"{PLUGIN_NAME}.py"
    if not main.is_file():
        return [f"the GIMP plug-in is not installed in {target}"]
    problems = []
    if not os.access(main, os.X_OK):
        problems.append(f"{main} is not executable (GIMP 3 skips it)")
    for path in sorted(SOURCE_DIR.glob("*.py")):
        installed = target / path.name
        if not installed.is_file():
            problems.append(f"missing {installed}")
        elif installed.read_bytes() != path.read_bytes():
            problems.append(f"{installed} is outdated; run `impasto install-plugin gimp`")
    problems += check_vendored(target)
    if not problems:
        problems += check_runtime_deps(target, python or gimp_python(dest))
    return problems
