"""Cached Debian chroots with GIMP 3, and batch runs of gimp-console inside them.

The GIMP tests need a real GIMP 3 (with its own Python), which the host's Debian 12
lacks: GIMP 3.0.4 (Python 3.13) comes from a Debian 13 chroot, GIMP 3.2.6 (Python
3.14) from the Debian sid chroot that also holds Krita 5.3. Both are built once and
cached by tests/debian_chroot.py. Run ``python -m tests.gimp_chroot build`` (or
``.ci/gimp-chroot.sh``) to build the GIMP 3.0 one ahead of the tests.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from tests import debian_chroot
from tests.debian_chroot import ChrootUnavailable, host_mirror  # noqa: F401 (re-exported)

SPECS = {"3.0": debian_chroot.GIMP_TRIXIE, "3.2": debian_chroot.SID}
DEFAULT_ROOT = debian_chroot.CACHE / debian_chroot.GIMP_TRIXIE.name
# Both series install these names (gimp-console-3.0 / -3.2 are the versioned ones).
GIMP_CONSOLE = "gimp-console-3"
GIMP_GUI = "gimp-3"
PLUGIN_DIR_IN_ROOT = Path("root/.config/GIMP/3.0/plug-ins")


def root_path(series: str = "3.0") -> Path:
    return SPECS[series].root()


def is_ready(root: Path, series: str = "3.0") -> bool:
    return SPECS[series].is_ready(root)


def ensure_root(root: Path | None = None, log=None, series: str = "3.0") -> Path:
    """Return a ready chroot with GIMP ``series``, building it first if not cached."""
    return debian_chroot.ensure_root(SPECS[series], root, log)


def plugin_dir_in_root(series: str = "3.0") -> Path:
    """The plug-ins folder of root's GIMP ``series`` (each series has its own)."""
    return Path(f"root/.config/GIMP/{series}/plug-ins")


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
    if argv[1:2] != ["build"] or not set(argv[2:]) <= set(SPECS):
        print("usage: python -m tests.gimp_chroot build [3.0|3.2]...  (builds GIMP 3 chroots)")
        return 2
    names = [SPECS[series].name for series in argv[2:] or ["3.0"]]
    return debian_chroot.main([argv[0], "build", *names])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
