"""Which weights a process may load, torch-free (the daemon checks names before queueing).

A local user (CLI, Python API) may give a path to a ``.pth`` state dict and allow
downloads. A daemon only offers names: the bundled ``original`` VGG19, ``torchvision``
weights already in its hub cache, and the ``NAME.pth`` files in its own weights folder
(its flag or config, never a client's). No client value reaches the filesystem or the
network, and every refused value gets the same error, whatever exists on disk.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path

from impasto.shared.errors import BAD_OPTIONS, ImpastoError

BUILTIN = ("original", "torchvision")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class WeightSource:
    """Where this process may take weights from.

    ``folder``: a daemon-side folder whose ``NAME.pth`` files are offered as ``NAME``.
    ``allow_paths``: a ``weights`` value may be a path (only for the local user's own
    runs). ``allow_download``: torchvision weights may be fetched when not cached.
    """

    folder: Path | None = None
    allow_paths: bool = True
    allow_download: bool = True

    @classmethod
    def for_daemon(cls, folder: Path | None) -> WeightSource:
        return cls(folder=folder, allow_paths=False, allow_download=False)

    def names(self) -> list[str]:
        """The names a client may choose, for error messages and ``status``."""
        found = []
        if self.folder is not None and self.folder.is_dir():
            for entry in sorted(self.folder.iterdir()):
                if entry.suffix == ".pth" and _NAME.match(entry.stem) and _regular(entry):
                    found.append(entry.stem)
        return [*BUILTIN, *found]

    def refuse(self) -> ImpastoError:
        # Never echoes the value nor says why: every refused value reads the same, so a
        # client learns nothing about the daemon's filesystem.
        return ImpastoError(
            "option 'weights': not a name this daemon offers; "
            f"choose one of: {', '.join(self.names())}",
            BAD_OPTIONS,
        )

    def resolve(self, weights: str) -> tuple[str, Path | None]:
        """(kind, path): kind is "original", "torchvision" or "file".

        Checked before anything is opened; only regular files are ever read (a FIFO or a
        device would block the worker).
        """
        if weights in BUILTIN:
            return weights, None
        if self.allow_paths:
            return "file", Path(weights).expanduser()
        if not isinstance(weights, str) or not _NAME.match(weights) or self.folder is None:
            raise self.refuse()
        path = self.folder / f"{weights}.pth"
        if not _regular(path):
            raise self.refuse()
        return "file", path

    def identity(self, weights: str) -> tuple:
        """What a cached model is keyed by: the resolved file (device, inode, change time
        and size), never its spelling, so one file under many names loads once."""
        kind, path = self.resolve(weights)
        if kind == "file" and path is not None:
            try:
                st = path.stat()
                return (kind, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
            except OSError:
                return (kind, str(path))
        return (kind,)


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False
