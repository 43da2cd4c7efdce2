"""`impasto install-plugin krita`: put the pykrita plug-in where Krita finds it.

Krita loads Python plug-ins from ``<resource folder>/pykrita`` (a ``.desktop`` file plus
a package folder) when ``enable_<name>=true`` sits in the ``[python]`` group of
``kritarc``. Krita's Python is not the interpreter running this code, so the client is
vendored into the plug-in, and pyzmq/msgpack are checked with the Python Krita really
runs (the one whose libpython it links, not the first on PATH) and, if missing there,
vendored as wheels for exactly that Python. A Krita whose Python cannot be run from
outside (Windows, macOS, AppImage) gets wheels for the Python its bundle holds.
"""

from __future__ import annotations

import filecmp
import os
import shlex
import shutil
import sys
from pathlib import Path

from impasto.plugin import binary_deps, installed_editors, vendor
from impasto.plugin.installed_editors import Found
from impasto.shared.errors import ImpastoError

PLUGIN_NAME = "impasto_krita"
SOURCE = Path(__file__).resolve().parent / "krita"
VENDOR_DIR = "vendor"  # inside the plug-in package: the client and the wheels
PYTHON_ENV = "IMPASTO_KRITA_PYTHON"  # override the interpreter Krita embeds


def default_pykrita_dir() -> Path:
    """The user's pykrita folder for a native Krita on this platform."""
    return installed_editors.krita_resource_dir() / "pykrita"


def default_kritarc(found: Found | None = None) -> Path:
    """Where Krita keeps its settings (Flatpak: inside the app's own config folder)."""
    if found is not None and found.kind == "flatpak":
        return Path.home() / ".var" / "app" / found.where / "config" / "kritarc"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "kritarc"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Preferences" / "kritarc"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "kritarc"


def pykrita_dir(dest: Path | None, found: Found | None = None) -> Path:
    """``dest`` may be the pykrita folder itself or a Krita resource folder holding it."""
    if dest is None:
        return found.plugin_dir if found is not None else default_pykrita_dir()
    dest = Path(dest).expanduser()
    return dest if dest.name == "pykrita" else dest / "pykrita"


def find() -> list[Found]:
    return installed_editors.find_krita()


def krita_python(found: Found | None = None) -> list[str] | None:
    """The command running Krita's own Python ($IMPASTO_KRITA_PYTHON wins), if runnable."""
    if os.environ.get(PYTHON_ENV):
        return shlex.split(os.environ[PYTHON_ENV])
    return found.python if found is not None else None


def lay_out(target: Path) -> Path:
    """Copy the plug-in, its .desktop file and the vendored client into a pykrita folder."""
    if not (SOURCE / PLUGIN_NAME / "__init__.py").is_file():
        raise ImpastoError(f"the Krita plug-in sources are missing from {SOURCE}")
    try:
        target.mkdir(parents=True, exist_ok=True)
        package = target / PLUGIN_NAME
        if package.exists():
            shutil.rmtree(package)
        shutil.copytree(SOURCE / PLUGIN_NAME, package, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(SOURCE / f"{PLUGIN_NAME}.desktop", target / f"{PLUGIN_NAME}.desktop")
        vendor.vendor_client(package / VENDOR_DIR)
    except OSError as exc:
        raise ImpastoError(f"cannot install the Krita plug-in into {target}: {exc}") from None
    return package


def install(
    dest: Path | None = None,
    kritarc: Path | None = None,
    python: list[str] | None = None,
    wheelhouse: Path | None = None,
) -> Path:
    """Install (or update) the plug-in; returns the plug-in package folder it wrote.

    ``dest``: the pykrita folder or a resource folder (default: the found Krita's);
    ``kritarc``: the config file to enable it in (default: the found Krita's);
    ``python``: the command running Krita's Python (default: the found Krita's).
    """
    found = next(iter(find()), None)
    python = python or krita_python(found)
    target = installed_editors.wheels_plan("Krita", found, python, PYTHON_ENV)
    package = lay_out(pykrita_dir(dest, found))
    try:
        enable_in_kritarc(kritarc or default_kritarc(found))
    except OSError as exc:
        raise ImpastoError(f"cannot enable the Krita plug-in in kritarc: {exc}") from None
    problems = vendor.provide_runtime_deps(package / VENDOR_DIR, python, target, wheelhouse)
    if problems:
        raise ImpastoError(
            "the Krita plug-in is installed, but Krita's Python cannot use it yet: "
            + "; ".join(problems)
        )
    return package


def check(
    dest: Path | None = None, kritarc: Path | None = None, python: list[str] | None = None
) -> list[str]:
    """What is missing or outdated (empty = the plug-in is ready to use)."""
    found = next(iter(find()), None)
    target = pykrita_dir(dest, found)
    package = target / PLUGIN_NAME
    fix = "run `impasto install-plugin krita`"
    problems = []
    if found is None:
        problems.append(installed_editors.not_found_message("Krita"))
    else:
        problems += found.notes
    if not (target / f"{PLUGIN_NAME}.desktop").is_file():
        problems.append(f"{target / (PLUGIN_NAME + '.desktop')} is missing: {fix}")
    if not (package / "__init__.py").is_file():
        problems.append(f"the plug-in folder {package} is missing: {fix}")
        return problems
    stale = _differing_files(SOURCE / PLUGIN_NAME, package)
    if stale:
        problems.append(f"the installed plug-in is outdated ({', '.join(stale[:3])}): {fix}")
    problems += [f"{p}: {fix}" for p in vendor.check_vendored(package / VENDOR_DIR)]
    rc = kritarc or default_kritarc(found)
    if not is_enabled(rc):
        problems.append(f"the plug-in is not enabled in {rc}: {fix}")
    python = python or krita_python(found)
    if python:
        problems += vendor.check_runtime_deps(package / VENDOR_DIR, python)
    elif found is not None and (wheels := found.wheels_target()) is not None:
        have = binary_deps.bundled_tags(str(package / VENDOR_DIR))
        if wheels.tag not in have:
            problems.append(f"no wheels for {found.describe()} ({wheels.tag}): {fix}")
    return problems


def _differing_files(source: Path, installed: Path) -> list[str]:
    out = []
    for path in sorted(source.rglob("*.py")):
        rel = path.relative_to(source)
        copy = installed / rel
        if not copy.is_file() or not filecmp.cmp(path, copy, shallow=False):
            out.append(str(rel))
    return out


_ENABLE_KEY = f"enable_{PLUGIN_NAME}"


def enable_in_kritarc(kritarc: Path, name: str = PLUGIN_NAME) -> None:
    """Set ``enable_<name>=true`` in the [python] group, leaving the rest as is."""
    key = f"enable_{name}"
    lines = kritarc.read_text().splitlines() if kritarc.exists() else []
    out, in_python, done = [], False, False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if in_python and not done:
                out.append(f"{key}=true")
                done = True
            in_python = stripped == "[python]"
        elif in_python and stripped.split("=", 1)[0].strip() == key:
            line, done = f"{key}=true", True
        out.append(line)
    if not done:
        if not in_python:
            if out and out[-1].strip():
                out.append("")
            out.append("[python]")
        out.append(f"{key}=true")
    kritarc.parent.mkdir(parents=True, exist_ok=True)
    kritarc.write_text("\n".join(out) + "\n")


def is_enabled(kritarc: Path) -> bool:
    if not kritarc.is_file():
        return False
    in_python = False
    for line in kritarc.read_text(errors="replace").splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            in_python = stripped == "[python]"
        elif in_python and stripped.replace(" ", "") == f"{_ENABLE_KEY}=true":
            return True
    return False
