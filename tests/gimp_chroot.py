"""A cached Debian 13 chroot with GIMP 3, and batch runs of gimp-console inside it.

The GIMP tests need a real GIMP 3 (with its Python 3.13), which the host's Debian 12
lacks, so we debootstrap trixie once and keep it outside the repository (the tests
override XDG_CACHE_HOME, so not there either). The build goes into ``ROOT.tmp`` and is
renamed when complete, with a marker file, so an interrupted build is never taken for
a cache. Run ``python tests/gimp_chroot.py build`` (or ``.ci/gimp-chroot.sh``) to
build it ahead of the tests.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

DEFAULT_ROOT = Path("/var/cache/impasto/gimp3-trixie")
SUITE = "trixie"
PACKAGES = ("gimp", "python3-zmq", "python3-msgpack")
MARKER = ".impasto-gimp-ready"  # written last; its content names what was installed
MARKER_TEXT = f"{SUITE} {' '.join(PACKAGES)}\n"
GIMP_CONSOLE = "gimp-console-3.0"
GIMP_GUI = "gimp-3.0"
PLUGIN_DIR_IN_ROOT = Path("root/.config/GIMP/3.0/plug-ins")


class ChrootUnavailable(RuntimeError):
    """The chroot cannot be built here; the message says what is missing."""


def root_path() -> Path:
    return Path(os.environ.get("IMPASTO_GIMP_ROOT", str(DEFAULT_ROOT)))


def is_ready(root: Path) -> bool:
    marker = root / MARKER
    return marker.is_file() and marker.read_text() == MARKER_TEXT


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
    done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise ChrootUnavailable(f"{' '.join(map(str, cmd))} failed (exit {done.returncode})")


def ensure_root(root: Path | None = None, log=None) -> Path:
    """Return a ready chroot, building it first if no complete cache exists."""
    root = root or root_path()
    if is_ready(root):
        return root
    missing = _missing_prerequisites()
    if missing:
        raise ChrootUnavailable(
            f"the GIMP 3 tests need a Debian 13 chroot at {root} (or IMPASTO_GIMP_ROOT); "
            f"building it needs: {'; '.join(missing)}"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    log = log or sys.stderr
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits, then finds the cache
        if is_ready(root):
            return root
        tmp = root.with_name(root.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        _run(["debootstrap", "--variant=minbase", SUITE, str(tmp), host_mirror()], log)
        _run(
            [
                "chroot",
                str(tmp),
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                *list(PACKAGES),
            ],
            log,
        )
        _run(["chroot", str(tmp), "apt-get", "clean"], log)
        (tmp / MARKER).write_text(MARKER_TEXT)
        if root.exists():  # an incomplete or outdated build from before
            shutil.rmtree(root)
        tmp.rename(root)
    return root


def _script_literal(path: str) -> str:
    return f"exec(compile(open({path!r}).read(), {path!r}, 'exec'))"


def run_batch(
    root: Path,
    code: str,
    timeout: float = 300,
    display: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run Python ``code`` in GIMP's python-fu-eval inside the chroot.

    Without ``display`` it is the headless gimp-console; with one (an X server on the
    host: the chroot reaches its abstract socket, no mounts needed) the full GUI GIMP.
    The code goes through a file in the chroot's /tmp because a long ``-b`` argument
    is awkward to quote. GIMP's own output is captured for the caller's asserts.
    """
    name = f"impasto-batch-{uuid.uuid4().hex}.py"
    script = root / "tmp" / name
    script.write_text(code)
    env = {
        "HOME": "/root",
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        **(env or {}),
    }
    if display:
        env["DISPLAY"] = display
    program = [GIMP_GUI] if display else [GIMP_CONSOLE, "-i", "--no-fonts"]
    cmd = [
        "chroot",
        str(root),
        *program,
        "--batch-interpreter",
        "python-fu-eval",
        "-b",
        _script_literal(f"/tmp/{name}"),
        "--quit",
    ]
    try:
        return subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    finally:
        script.unlink(missing_ok=True)


def scratch_dir(root: Path) -> tuple[Path, str]:
    """A fresh folder in the chroot's /tmp: (host path, path as GIMP sees it)."""
    host = Path(tempfile.mkdtemp(prefix="impasto-gimp-", dir=root / "tmp"))
    return host, "/" + str(host.relative_to(root))


def main(argv: list[str]) -> int:
    if argv[1:] != ["build"]:
        print("usage: gimp_chroot.py build   (builds or reuses the GIMP 3 chroot)")
        return 2
    try:
        print(ensure_root(log=sys.stdout))
    except ChrootUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
