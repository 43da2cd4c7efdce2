"""Put the pyzmq/msgpack wheels built for *this* Python on sys.path, inside an editor.

pyzmq is compiled per Python version and platform: a copy built for another Python
fails with pyzmq's "importing zmq from its source tree" error, and an editor's Python
changes under a plug-in with every editor upgrade (Krita 5.3 in Debian sid moved from
3.11 to 3.14). So the installer and the plug-in zips keep the wheels in one folder per
Python ABI, ``wheels/<tag>`` (tag: ``cp314-linux-x86_64``, ``cp310-windows-amd64``,
``cp312-macos-universal2``), and ``activate`` adds only the folder made for the running
interpreter. Without one, the editor's own (system) zmq and msgpack are used when they
import; when they do not, importing them fails with a message that names the Python
the editor runs and the fix, instead of pyzmq's puzzle.

Standard library only: this runs inside Krita and GIMP before anything else of ours.
"""

from __future__ import annotations

import importlib.abc
import os
import platform
import sys

IMPORT_NAMES = ("zmq", "msgpack")
WHEELS_DIR = "wheels"
OS_NAMES = {"linux": "linux", "win32": "windows", "darwin": "macos"}
MACHINES = {"x86_64": "x86_64", "amd64": "amd64", "aarch64": "aarch64", "arm64": "arm64"}
FIX = (
    "reinstall the plug-in for this editor (`impasto install-plugin krita|gimp`, or the "
    "plug-in zip built for your platform and this Python: `impasto package-plugin`)"
)


def tag_for(version: str, os_name: str, machine: str) -> str:
    """The folder name for CPython ``version`` (``"3.14"``, ``"3.14t"``) on os/machine."""
    return f"cp{version.replace('.', '')}-{os_name}-{machine}"


def running_tags() -> list[str]:
    """Folder names that fit this interpreter, the most specific first."""
    version = "{}.{}".format(*sys.version_info[:2])
    if "t" in getattr(sys, "abiflags", ""):  # free-threaded builds have their own ABI
        version += "t"
    os_name = OS_NAMES.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    tags = [tag_for(version, os_name, MACHINES.get(machine, machine))]
    if os_name == "macos":  # one universal2 wheel serves Intel and Apple silicon
        tags.append(tag_for(version, os_name, "universal2"))
    return tags


def bundled_tags(vendor_dir: str) -> list[str]:
    folder = os.path.join(vendor_dir, WHEELS_DIR)
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


class _ExplainMissing(importlib.abc.MetaPathFinder):
    """Last on sys.meta_path: reached only when zmq/msgpack were found nowhere."""

    def __init__(self, message: str):
        self.message = message

    def find_spec(self, name, path=None, target=None):
        if name in IMPORT_NAMES:
            raise ModuleNotFoundError(self.message, name=name)
        return None


def missing_message(vendor_dir: str) -> str:
    have = ", ".join(bundled_tags(vendor_dir)) or "none"
    return (
        f"Impasto needs pyzmq and msgpack built for the Python this editor runs: "
        f"Python {sys.version.split()[0]} ({running_tags()[0]}, {sys.executable or '?'}). "
        f"The plug-in has wheels for: {have}, and this Python has no copy of its own. "
        f"Fix: {FIX}."
    )


def activate(vendor_dir: str) -> str | None:
    """Add the wheels folder for this Python (if bundled) to sys.path; returns it."""
    chosen = None
    for tag in running_tags():
        folder = os.path.join(vendor_dir, WHEELS_DIR, tag)
        if os.path.isdir(folder):
            chosen = folder
            break
    if chosen and chosen not in sys.path:
        sys.path.insert(0, chosen)
    if not any(isinstance(f, _ExplainMissing) for f in sys.meta_path):
        sys.meta_path.append(_ExplainMissing(missing_message(vendor_dir)))
    return chosen
