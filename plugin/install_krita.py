"""`impasto install-plugin krita`: put the pykrita plug-in where Krita finds it.

Krita loads Python plug-ins from ``<resource folder>/pykrita`` (a ``.desktop`` file plus
a package folder) when ``enable_<name>=true`` sits in the ``[python]`` group of
``kritarc``. Krita's Python is not the interpreter running this code, so the client is
vendored into the plug-in and pyzmq/msgpack are checked (and vendored if missing) with
the Python that Krita embeds.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
from pathlib import Path

from impasto.plugin import vendor
from impasto.shared.errors import ImpastoError

PLUGIN_NAME = "impasto_krita"
SOURCE = Path(__file__).resolve().parent / "krita"
VENDOR_DIR = "vendor"  # inside the plug-in package: the client and maybe wheels
PYTHON_ENV = "IMPASTO_KRITA_PYTHON"  # override the interpreter Krita embeds
KRITA_PYKRITA_SO = (
    "/usr/lib/x86_64-linux-gnu/kritaplugins/kritapykrita.so",
    "/usr/lib/aarch64-linux-gnu/kritaplugins/kritapykrita.so",
    "/usr/lib64/kritaplugins/kritapykrita.so",
    "/usr/lib/kritaplugins/kritapykrita.so",
)


def default_pykrita_dir() -> Path:
    """``$XDG_DATA_HOME/krita/pykrita`` (Krita's default resource folder on Linux)."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "krita" / "pykrita"


def default_kritarc() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "kritarc"


def pykrita_dir(dest: Path | None) -> Path:
    """``dest`` may be the pykrita folder itself or a Krita resource folder holding it."""
    if dest is None:
        return default_pykrita_dir()
    dest = Path(dest).expanduser()
    return dest if dest.name == "pykrita" else dest / "pykrita"


def krita_python() -> list[str]:
    """The interpreter matching the libpython Krita's Python plug-in links against."""
    if os.environ.get(PYTHON_ENV):
        return os.environ[PYTHON_ENV].split()
    for so in KRITA_PYKRITA_SO:
        if not Path(so).exists():
            continue
        try:
            libs = subprocess.run(["ldd", so], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            break
        match = re.search(r"libpython(3\.\d+)", libs)
        if match and shutil.which(f"python{match.group(1)}"):
            return [shutil.which(f"python{match.group(1)}")]
    return ["python3"]


def install(
    dest: Path | None = None, kritarc: Path | None = None, python: list[str] | None = None
) -> Path:
    """Install (or update) the plug-in; returns the plug-in package folder it wrote.

    ``dest``: the pykrita folder or a resource folder (default: the user's);
    ``kritarc``: the config file to enable it in (default: $XDG_CONFIG_HOME/kritarc).
    """
    target = pykrita_dir(dest)
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
        enable_in_kritarc(kritarc or default_kritarc())
    except OSError as exc:
        raise ImpastoError(f"cannot install the Krita plug-in into {target}: {exc}") from None
    problems = vendor.ensure_runtime_deps(package / VENDOR_DIR, python or krita_python())
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
    target = pykrita_dir(dest)
    package = target / PLUGIN_NAME
    fix = "run `impasto install-plugin krita`"
    problems = []
    if not shutil.which("krita"):
        problems.append("Krita is not installed (no `krita` on PATH)")
    if not (target / f"{PLUGIN_NAME}.desktop").is_file():
        problems.append(f"{target / (PLUGIN_NAME + '.desktop')} is missing: {fix}")
    if not (package / "__init__.py").is_file():
        problems.append(f"the plug-in folder {package} is missing: {fix}")
        return problems
    stale = _differing_files(SOURCE / PLUGIN_NAME, package)
    if stale:
        problems.append(f"the installed plug-in is outdated ({', '.join(stale[:3])}): {fix}")
    problems += [f"{p}: {fix}" for p in vendor.check_vendored(package / VENDOR_DIR)]
    rc = kritarc or default_kritarc()
    if not is_enabled(rc):
        problems.append(f"the plug-in is not enabled in {rc}: {fix}")
    problems += vendor.check_runtime_deps(package / VENDOR_DIR, python or krita_python())
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


def enable_in_kritarc(kritarc: Path) -> None:
    """Set ``enable_impasto_krita=true`` in the [python] group, leaving the rest as is."""
    lines = kritarc.read_text().splitlines() if kritarc.exists() else []
    out, in_python, done = [], False, False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if in_python and not done:
                out.append(f"{_ENABLE_KEY}=true")
                done = True
            in_python = stripped == "[python]"
        elif in_python and stripped.split("=", 1)[0].strip() == _ENABLE_KEY:
            line, done = f"{_ENABLE_KEY}=true", True
        out.append(line)
    if not done:
        if not in_python:
            if out and out[-1].strip():
                out.append("")
            out.append("[python]")
        out.append(f"{_ENABLE_KEY}=true")
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
