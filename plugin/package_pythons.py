"""Which Python each editor release runs on each platform: the wheels a plug-in zip needs.

On Linux with a distribution's editor, the installer asks the editor's own interpreter;
the official Windows and macOS builds (and Krita's AppImage) bundle a Python of their
own that cannot be asked without running the editor, so the zips carry wheels for the
versions below. A zip holds one wheels folder per version (a few hundred kB each), so
the default covers every listed release, and ``--python`` narrows or extends it. Sources
are in docs/editor-pythons.md; a wrong entry shows up in the editor as the plug-in's
"Impasto needs pyzmq and msgpack built for the Python this editor runs: Python X.Y"
message, and ``impasto package-plugin ... --python X.Y`` is the fix.
"""

from __future__ import annotations

from impasto.plugin.vendor import Target

# (editor, platform) -> {release: Python}
BUNDLED_PYTHONS: dict[tuple[str, str], dict[str, str]] = {
    # Krita 5.2 moved to Python 3.10 (with PyQt 5.15); Krita 5.3 and 6.0 to Python 3.13.
    ("krita", "windows"): {"5.2": "3.10", "5.3": "3.13", "6.0": "3.13"},
    ("krita", "macos"): {"5.2": "3.10", "5.3": "3.13", "6.0": "3.13"},
    ("krita", "linux"): {"5.2": "3.10", "5.3": "3.13", "6.0": "3.13"},  # the AppImage
    # GIMP 3 bundles the Python of its build environment: MSYS2 on Windows, MacPorts on macOS.
    ("gimp", "windows"): {"3.0": "3.12", "3.2": "3.12"},
    ("gimp", "macos"): {"3.0": "3.10", "3.2": "3.13"},
    # Distributions' GIMP: Debian 13 (3.0.4, Python 3.13) and sid (3.2.6, Python 3.14).
    ("gimp", "linux"): {"3.0": "3.13", "3.2": "3.14"},
}
MACHINES = {"linux": "x86_64", "windows": "amd64", "macos": "universal2"}
PLATFORMS = tuple(MACHINES)


def default_pythons(editor: str, platform: str) -> list[str]:
    """Every Python the listed releases of ``editor`` bundle on ``platform``, oldest first."""
    versions = set(BUNDLED_PYTHONS[(editor, platform)].values())
    return sorted(versions, key=lambda v: tuple(int(p) for p in v.split(".")))


def targets(editor: str, platform: str, pythons: list[str] | None = None) -> list[Target]:
    """Wheel targets for a zip: the given Pythons, or every one the editor bundles."""
    chosen = pythons or default_pythons(editor, platform)
    return [Target(version, platform, MACHINES[platform]) for version in chosen]
