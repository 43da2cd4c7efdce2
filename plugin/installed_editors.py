"""Find the Krita and GIMP 3 installed here: kind, version, plug-in folder, and Python.

The installers must put the plug-in where *this* editor looks and vendor wheels for the
Python *it* runs, which is rarely the first ``python3`` on PATH (a pyenv shim, a venv).
Each finder returns ``Found`` or None; ``python`` is a command that runs the editor's
own interpreter when one can be run from outside the editor (a distribution package, a
Flatpak), else None, and then ``python_version`` comes from the files of the bundle
(Windows, macOS) or the release table (AppImage).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from impasto.plugin import binary_deps
from impasto.plugin.package_pythons import BUNDLED_PYTHONS
from impasto.plugin.vendor import Target
from impasto.shared.errors import ImpastoError

KRITA_PYKRITA_SO = (
    "/usr/lib/x86_64-linux-gnu/kritaplugins/kritapykrita.so",
    "/usr/lib/aarch64-linux-gnu/kritaplugins/kritapykrita.so",
    "/usr/lib64/kritaplugins/kritapykrita.so",
    "/usr/lib/kritaplugins/kritapykrita.so",
)
KRITA_FLATPAK = "org.kde.krita"
GIMP_FLATPAK = "org.gimp.GIMP"
GIMP_SERIES = ("3.2", "3.0")  # newest first; each keeps its own plug-ins folder


@dataclass
class Found:
    editor: str  # "Krita" or "GIMP"
    kind: str  # "package", "flatpak", "appimage", "windows", "macos"
    version: str  # "5.1.5", "3.2", or "" when unknown
    where: str  # the program, bundle or Flatpak id
    plugin_dir: Path  # pykrita folder, or GIMP's plug-ins folder
    python: list[str] | None = None  # runs the editor's Python, when that is possible
    python_version: str = ""  # "3.13" when known without running it
    notes: list[str] = field(default_factory=list)

    def wheels_target(self) -> Target | None:
        """Wheels for a bundled Python that cannot be run from outside (else None)."""
        if self.python or not self.python_version:
            return None
        os_name = binary_deps.OS_NAMES.get(sys.platform, "linux")
        machine = platform.machine().lower()
        if os_name == "macos":  # universal2 wheels serve Intel and Apple silicon
            machine = "universal2"
        elif os_name == "windows":  # pip's and Python's name for x86_64 there
            machine = {"x86_64": "amd64"}.get(machine, machine)
        return Target(self.python_version, os_name, binary_deps.MACHINES.get(machine, machine))

    def describe(self) -> str:
        py = self.python_version or (" ".join(self.python) if self.python else "unknown")
        version = f" {self.version}" if self.version else ""
        return f"{self.editor}{version} ({self.kind}: {self.where}; Python {py})"


LOOKED_FOR = {
    (
        "Krita",
        "linux",
    ): "`krita` on PATH, the Flatpak org.kde.krita, a krita*.AppImage in ~/Applications",
    ("Krita", "win32"): "Krita (x64) in Program Files",
    ("Krita", "darwin"): "krita.app in /Applications",
    ("GIMP 3", "linux"): "gimp-console-3.2/3.0 or gimp-3.2/3.0 on PATH, the Flatpak org.gimp.GIMP",
    ("GIMP 3", "win32"): "GIMP 3 in Program Files or in your user's Programs folder",
    ("GIMP 3", "darwin"): "GIMP.app in /Applications",
}


def not_found_message(editor: str) -> str:
    """``editor`` ("Krita" or "GIMP 3") is missing: where we looked, what to do instead."""
    platform = sys.platform if sys.platform in ("win32", "darwin") else "linux"
    command = editor.split()[0].lower()
    return (
        f"{editor} is not installed here (looked for {LOOKED_FOR[(editor, platform)]}). "
        f"Install {editor}, or build a plug-in zip for another machine: "
        f"`impasto package-plugin {command} --platform ...`"
    )


def wheels_plan(
    editor: str, found: Found | None, python: list[str] | None, env_var: str
) -> Target | None:
    """None when ``python`` (the editor's) will be asked; else the bundle's wheels target.
    Raises, before anything is written, when neither is known."""
    if python:
        return None
    target = found.wheels_target() if found is not None else None
    if target is None:
        if found is None:
            raise ImpastoError(not_found_message(editor))
        why = found.notes or [f"set {env_var} to the command that runs it"]
        raise ImpastoError(
            f"found {found.describe()}, but not which Python it runs: " + "; ".join(why)
        )
    return target


def _run(cmd: list[str], timeout: float = 20) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def _series(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _table_python(editor: str, platform: str, version: str) -> str:
    return BUNDLED_PYTHONS.get((editor, platform), {}).get(_series(version), "")


def _home() -> Path:
    return Path.home()


# ---------------------------------------------------------------- Krita


def krita_resource_dir() -> Path:
    """Krita's writable resource folder (holding pykrita) for a native install."""
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", _home())) / "krita"
    if sys.platform == "darwin":
        return _home() / "Library" / "Application Support" / "krita"
    data = os.environ.get("XDG_DATA_HOME") or str(_home() / ".local" / "share")
    return Path(data) / "krita"


def interpreter_for_libpython(lib: Path, root: Path = Path("/")) -> list[str] | None:
    """The ``python3.X`` whose own libpython is ``lib`` (the one Krita links).

    Not the first python3.X on PATH: a pyenv shim or /usr/local build of the same
    version has other site-packages. ``lib`` lives in PREFIX/lib[/multiarch], the
    interpreter in PREFIX/bin.
    """
    match = re.search(r"libpython(3\.\d+)", lib.name)
    if not match:
        return None
    lib = lib.resolve()
    for parent in list(lib.parents)[:3]:
        prefix = parent.parent if parent.name.startswith("lib") else parent
        for base in (prefix, Path("/usr")):
            candidate = base / "bin" / f"python{match.group(1)}"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return [str(candidate)]
    return None


def _krita_package() -> Found | None:
    program = shutil.which("krita")
    if not program:
        return None
    python = None
    for so in KRITA_PYKRITA_SO:
        if Path(so).exists():
            libs = _run(["ldd", so])
            match = re.search(r"(libpython3\.\d+\S*) => (\S+)", libs)
            if match:
                python = interpreter_for_libpython(Path(match.group(2)))
            break
    version = ""
    if shutil.which("dpkg-query"):
        version = _run(["dpkg-query", "-W", "-f", "${Version}", "krita"])
    match = re.search(r"(?:\d+:)?(\d+\.\d+\.\d+)", version)
    found = Found("Krita", "package", match.group(1) if match else "", program, Path())
    found.plugin_dir = krita_resource_dir() / "pykrita"
    found.python = python
    if python is None:
        found.notes.append("could not tell which Python Krita links (no kritapykrita.so found)")
    return found


def _flatpak_version(app: str) -> str | None:
    if not shutil.which("flatpak"):
        return None
    info = _run(["flatpak", "info", app])
    if not info:
        return None
    match = re.search(r"(?m)^\s*Version:\s*(\S+)", info)
    return match.group(1) if match else ""


def _krita_flatpak() -> Found | None:
    version = _flatpak_version(KRITA_FLATPAK)
    if version is None:
        return None
    found = Found("Krita", "flatpak", version, KRITA_FLATPAK, Path())
    found.plugin_dir = _home() / ".var" / "app" / KRITA_FLATPAK / "data" / "krita" / "pykrita"
    found.python = ["flatpak", "run", "--command=python3", KRITA_FLATPAK]
    return found


def _krita_appimage() -> Found | None:
    for folder in (_home() / "Applications", _home() / "Downloads", _home() / "bin", _home()):
        images = sorted(folder.glob("krita*.appimage")) + sorted(folder.glob("krita*.AppImage"))
        if images:
            image = images[-1]
            match = re.search(r"(\d+\.\d+\.\d+)", image.name)
            version = match.group(1) if match else ""
            found = Found(
                "Krita", "appimage", version, str(image), krita_resource_dir() / "pykrita"
            )
            found.python_version = _table_python("krita", "linux", version) or "3.13"
            return found
    return None


def _bundled_python_version(folder: Path) -> str:
    """3.X from python3X.dll / Python.framework/Versions/3.X inside an editor's bundle."""
    for path in sorted(folder.rglob("python3*.dll")) if folder.is_dir() else []:
        match = re.fullmatch(r"python3(\d+)\.dll", path.name, re.IGNORECASE)
        if match:
            return f"3.{match.group(1)}"
    for path in sorted(folder.glob("**/Python.framework/Versions/3.*")) if folder.is_dir() else []:
        return path.name
    for path in sorted(folder.glob("**/lib/python3.*")) if folder.is_dir() else []:
        if re.fullmatch(r"python3\.\d+", path.name):
            return path.name[len("python") :]
    return ""


def _krita_windows() -> Found | None:
    for base in (os.environ.get("PROGRAMFILES", r"C:\Program Files"),):
        bundle = Path(base) / "Krita (x64)"
        if (bundle / "bin" / "krita.exe").is_file():
            found = Found("Krita", "windows", "", str(bundle), krita_resource_dir() / "pykrita")
            found.python_version = _bundled_python_version(bundle)
            return found
    return None


def _krita_macos() -> Found | None:
    for bundle in (Path("/Applications/krita.app"), _home() / "Applications" / "krita.app"):
        if bundle.is_dir():
            found = Found("Krita", "macos", "", str(bundle), krita_resource_dir() / "pykrita")
            found.python_version = _bundled_python_version(bundle / "Contents")
            return found
    return None


def find_krita() -> list[Found]:
    """Every Krita found, the one a plain ``krita`` command starts first."""
    if sys.platform == "win32":
        finders = (_krita_windows,)
    elif sys.platform == "darwin":
        finders = (_krita_macos,)
    else:
        finders = (_krita_package, _krita_flatpak, _krita_appimage)
    return [found for finder in finders if (found := finder()) is not None]


# ---------------------------------------------------------------- GIMP


def gimp_config_dir(series: str) -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", _home())) / "GIMP" / series
    if sys.platform == "darwin":
        return _home() / "Library" / "Application Support" / "GIMP" / series
    config = os.environ.get("XDG_CONFIG_HOME") or str(_home() / ".config")
    return Path(config) / "GIMP" / series


PYGOBJECT_PROBE = "import gi; gi.require_version('Gimp', '3.0'); from gi.repository import Gimp"


def gimp_python_for(program: Path) -> list[str] | None:
    """The python3 that runs GIMP 3's Python plug-ins: ``#!/usr/bin/env python3`` finds
    the first python3 on GIMP's PATH, and only one with GIMP's GObject bindings can
    run a plug-in, so the candidates are tried with that import."""
    candidates = [program.resolve().parent / "python3", Path("/usr/bin/python3")]
    if on_path := shutil.which("python3"):
        candidates.append(Path(on_path))
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            probe = subprocess.run(
                [str(candidate), "-c", PYGOBJECT_PROBE], capture_output=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return [str(candidate)]
    return None


def _gimp_package() -> Found | None:
    for series in GIMP_SERIES:
        program = shutil.which(f"gimp-console-{series}") or shutil.which(f"gimp-{series}")
        if program:
            found = Found("GIMP", "package", series, program, gimp_config_dir(series) / "plug-ins")
            found.python = gimp_python_for(Path(program))
            if found.python is None:
                found.notes.append(
                    f"no python3 next to {program} or on PATH imports GIMP's bindings "
                    "(gi.repository.Gimp): GIMP's Python plug-ins cannot run"
                )
            return found
    return None


def _gimp_flatpak() -> Found | None:
    version = _flatpak_version(GIMP_FLATPAK)
    if version is None:
        return None
    series = _series(version) or "3.0"
    config = _home() / ".var" / "app" / GIMP_FLATPAK / "config" / "GIMP" / series
    found = Found("GIMP", "flatpak", version, GIMP_FLATPAK, config / "plug-ins")
    found.python = ["flatpak", "run", "--command=python3", GIMP_FLATPAK]
    return found


def _gimp_windows() -> Found | None:
    bases = [os.environ.get("PROGRAMFILES", r"C:\Program Files")]
    if os.environ.get("LOCALAPPDATA"):
        bases.append(str(Path(os.environ["LOCALAPPDATA"]) / "Programs"))
    for base in bases:
        bundle = Path(base) / "GIMP 3"
        for series in GIMP_SERIES:
            if (bundle / "bin" / f"gimp-{series}.exe").is_file():
                found = Found(
                    "GIMP", "windows", series, str(bundle), gimp_config_dir(series) / "plug-ins"
                )
                found.python_version = _bundled_python_version(bundle / "lib")
                return found
    return None


def _gimp_macos() -> Found | None:
    for bundle in (Path("/Applications/GIMP.app"), _home() / "Applications" / "GIMP.app"):
        if bundle.is_dir():
            plist = (bundle / "Contents" / "Info.plist").read_text(errors="replace")
            match = re.search(r"<string>(3\.\d+)(?:\.\d+)?</string>", plist)
            series = match.group(1) if match else "3.0"
            found = Found(
                "GIMP", "macos", series, str(bundle), gimp_config_dir(series) / "plug-ins"
            )
            found.python_version = _bundled_python_version(bundle / "Contents")
            return found
    return None


def find_gimp() -> list[Found]:
    if sys.platform == "win32":
        finders = (_gimp_windows,)
    elif sys.platform == "darwin":
        finders = (_gimp_macos,)
    else:
        finders = (_gimp_package, _gimp_flatpak)
    return [found for finder in finders if (found := finder()) is not None]
