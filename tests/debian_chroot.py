"""Cached Debian chroots holding an editor (GIMP 3, Krita 5.3, Krita 6) for the host tests.

The host runs Debian 12, whose editors are old, so each newer editor gets a minimal
debootstrap of the Debian suite that ships it, built once and kept outside the
repository (tests override XDG_CACHE_HOME, so not there either) under
/var/cache/impasto. A build goes into ``ROOT.tmp`` and is renamed when complete, with a
marker file naming what was installed, so an interrupted or outdated build is never
taken for a cache. ``python -m tests.debian_chroot build NAME...`` builds ahead of the
tests (.ci/install does it).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CACHE = Path("/var/cache/impasto")
MARKER = ".impasto-chroot-ready"  # written last; its content names what was installed
# The host's mirror serves a dated snapshot of sid, whose Release files have expired.
NO_EXPIRY = 'Acquire::Check-Valid-Until "false";\n'


class ChrootUnavailable(RuntimeError):
    """The chroot cannot be built here; the message says what is missing."""


@dataclass(frozen=True)
class ChrootSpec:
    """One cached chroot: which suite, which packages, where it lives."""

    name: str  # folder name under CACHE
    suite: str
    packages: tuple[str, ...]
    env_var: str  # overrides the location
    extra_suite: str | None = None  # added to sources.list; packages come from it (-t)
    legacy_marker: str | None = None  # marker file name of an older builder, still honoured

    @property
    def marker_text(self) -> str:
        extra = f"+{self.extra_suite}" if self.extra_suite else ""
        return f"{self.suite}{extra} {' '.join(self.packages)}\n"

    def root(self) -> Path:
        return Path(os.environ.get(self.env_var, str(CACHE / self.name)))

    def is_ready(self, root: Path | None = None) -> bool:
        root = root or self.root()
        for name in (MARKER, self.legacy_marker):
            marker = root / name if name else None
            if marker and marker.is_file() and marker.read_text() == self.marker_text:
                return True
        return False


# Debian 13: GIMP 3.0.4 with Python 3.13.
GIMP_TRIXIE = ChrootSpec(
    name="gimp3-trixie",
    suite="trixie",
    packages=("gimp", "python3-zmq", "python3-msgpack"),
    env_var="IMPASTO_GIMP_ROOT",
    legacy_marker=".impasto-gimp-ready",
)
# Debian sid: Krita 5.3.4 (PyQt5) and GIMP 3.2.6, both with Python 3.14. python3-pyqt5
# is only a Recommends of krita, and without it Krita's Python cannot start.
SID = ChrootSpec(
    name="sid-krita5-gimp32",
    suite="sid",
    packages=(
        "krita",
        "python3-pyqt5",
        "gimp",
        "python3-zmq",
        "python3-msgpack",
        "xvfb",
        "xauth",
    ),
    env_var="IMPASTO_SID_ROOT",
)
# Debian sid + experimental: Krita 6.0.4 (PyQt6; refuses PyQt5). It replaces Krita 5.3,
# hence a chroot of its own.
KRITA6 = ChrootSpec(
    name="sid-krita6",
    suite="sid",
    extra_suite="experimental",
    packages=("krita", "python3-pyqt6", "python3-zmq", "python3-msgpack", "xvfb", "xauth"),
    env_var="IMPASTO_KRITA6_ROOT",
)
SPECS = {spec.name: spec for spec in (GIMP_TRIXIE, SID, KRITA6)}


def host_mirror() -> str:
    """The Debian mirror the host's apt already uses (the only one reachable here)."""
    for path in sorted(Path("/etc/apt").glob("sources.list*")) + sorted(
        Path("/etc/apt/sources.list.d").glob("*")
    ):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"(?m)^\s*(?:URIs:|deb)\s+(?:\[[^]]*\]\s+)?(\S+)", text):
            uri = match.group(1).rstrip("/")
            if uri.endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def _missing_prerequisites() -> list[str]:
    missing = []
    if os.geteuid() != 0:
        missing.append("root (debootstrap and chroot need uid 0)")
    if shutil.which("debootstrap") is None:
        missing.append("debootstrap (apt-get install debootstrap)")
    return missing


def _run(cmd: list[str], log) -> None:
    print("+", " ".join(map(str, cmd)), file=log, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LANG="C.UTF-8")
    done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False, env=env)
    if done.returncode != 0:
        raise ChrootUnavailable(f"{' '.join(map(str, cmd))} failed (exit {done.returncode})")


def _install(spec: ChrootSpec, tmp: Path, mirror: str, log) -> None:
    apt = ["chroot", str(tmp), "apt-get", "-y", "-q"]
    (tmp / "etc/apt/apt.conf.d/99impasto-no-expiry").write_text(NO_EXPIRY)
    if spec.extra_suite:
        with (tmp / "etc/apt/sources.list").open("a") as fh:
            fh.write(f"deb {mirror} {spec.extra_suite} main\n")
        _run([*apt, "update"], log)
    target = ["-t", spec.extra_suite] if spec.extra_suite else []
    _run([*apt, "install", "--no-install-recommends", *target, *spec.packages], log)
    _run([*apt, "clean"], log)


def ensure_root(spec: ChrootSpec, root: Path | None = None, log=None) -> Path:
    """Return a ready chroot for ``spec``, building it first if no complete cache exists."""
    root = root or spec.root()
    if spec.is_ready(root):
        return root
    missing = _missing_prerequisites()
    if missing:
        raise ChrootUnavailable(
            f"these tests need a Debian {spec.suite} chroot at {root} (or ${spec.env_var}); "
            f"building it needs: {'; '.join(missing)}"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    log = log or sys.stderr
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits, then finds the cache
        if spec.is_ready(root):
            return root
        tmp = root.with_name(root.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        mirror = host_mirror()
        _run(["debootstrap", "--variant=minbase", spec.suite, str(tmp), mirror], log)
        _install(spec, tmp, mirror, log)
        (tmp / MARKER).write_text(spec.marker_text)
        if root.exists():  # an incomplete or outdated build from before
            shutil.rmtree(root)
        tmp.rename(root)
    return root


def main(argv: list[str]) -> int:
    names = argv[2:] if argv[1:2] == ["build"] else []
    if not names or any(name not in SPECS for name in names):
        print(f"usage: python -m tests.debian_chroot build NAME...   (NAME: {', '.join(SPECS)})")
        return 2
    try:
        for name in names:
            print(ensure_root(SPECS[name], log=sys.stdout), flush=True)
    except ChrootUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
