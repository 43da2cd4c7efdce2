"""Test-side helpers for running a real Krita under Xvfb with a throwaway HOME.

``KritaHome`` installs the Impasto plug-in (through the real installer) and the
self-test plug-in (tests/krita_selftest.py) into a fresh HOME; ``run`` writes a
scenario, starts ``xvfb-run krita``, and returns the facts the scenario recorded,
with the raw pixel dumps loaded as numpy arrays. With ``chroot`` the Krita is the one
in that cached Debian root (tests/debian_chroot.py): the HOME lives in its /tmp, the
scenario's input files are copied in and its outputs copied back, so the same tests
run against Krita 5.1 on the host and Krita 5.3 or 6.0 in a chroot.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from impasto.plugin import install_krita
from tests.daemon_fixture import give_token_to_chroot

HERE = Path(__file__).resolve().parent
SELFTEST = HERE / "krita_selftest.py"
QUIT_GRACE = 15.0  # seconds Krita may take to exit after writing its result
NO_DISPLAY = "could not connect to display"  # Qt's words when the X server is not there
INSTALL_HINT = (
    "install Krita and Xvfb to run the Krita tests: "
    "`apt-get install krita xvfb xauth python3-zmq python3-msgpack` (as .ci/install does)"
)
SELFTEST_DESKTOP = """[Desktop Entry]
Type=Service
ServiceTypes=Krita/PythonPlugin
X-KDE-Library=impasto_selftest
X-Python-2-Compatible=false
Name=Impasto self-test
Comment=Runs a test scenario given in $IMPASTO_KRITA_SPEC, then quits
"""


def missing_tools() -> list[str]:
    return [tool for tool in ("krita", "xvfb-run") if shutil.which(tool) is None]


class KritaHome:
    """A HOME with the plug-in installed and enabled, reusable across Krita runs.

    ``install=False`` leaves the Impasto plug-in out (the zip import test puts it in
    through Krita's own importer); ``chroot`` runs the Krita of that root, with the HOME
    made in its /tmp (``root`` is then None).
    """

    def __init__(self, root: Path | None, chroot: Path | None = None, install: bool = True):
        self.chroot = Path(chroot) if chroot else None
        if self.chroot is not None:  # the HOME must be inside the root Krita sees as /
            give_token_to_chroot(self.chroot)
            root = Path(tempfile.mkdtemp(prefix="impasto-krita-home-", dir=self.chroot / "tmp"))
        elif root is None:
            raise TypeError("KritaHome needs a root folder when Krita runs outside a chroot")
        self.root = Path(root)
        self.config = self.root / ".config"
        self.data = self.root / ".local" / "share"
        self.pykrita = self.data / "krita" / "pykrita"
        self.kritarc = self.config / "kritarc"
        self.plugin = None
        self.host_paths: dict[str, str] = {}  # input files as Krita sees them -> host paths
        if install:
            self.install()
        selftest = self.pykrita / "impasto_selftest"
        selftest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SELFTEST, selftest / "__init__.py")
        (self.pykrita / "impasto_selftest.desktop").write_text(SELFTEST_DESKTOP)
        install_krita.enable_in_kritarc(self.kritarc, "impasto_selftest")
        self.runs = 0

    @property
    def python(self) -> list[str] | None:
        """Krita's Python: the chroot's python3, or (None) whatever the installer finds."""
        return ["chroot", str(self.chroot), "python3"] if self.chroot else None

    def install(self) -> None:
        self.plugin = install_krita.install(self.pykrita, kritarc=self.kritarc, python=self.python)

    def inside(self, path: Path) -> str:
        """A host path as Krita sees it."""
        if self.chroot is None:
            return str(path)
        return "/" + str(Path(path).resolve().relative_to(self.chroot.resolve()))

    def env(self, spec: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "IMPASTO_", "QT_"))}
        if self.chroot is not None:  # nothing of the host's environment but the basics
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "TMPDIR": "/tmp"}
        home = self.inside(self.root)
        env.update(
            HOME=home,
            XDG_CONFIG_HOME=f"{home}/.config",
            XDG_DATA_HOME=f"{home}/.local/share",
            XDG_CACHE_HOME=f"{home}/.cache",
            XDG_STATE_HOME=f"{home}/.local/state",
            IMPASTO_KRITA_SPEC=self.inside(spec),
            LANG="C.UTF-8",
        )
        return env

    def _share(self, spec: dict, run_dir: Path) -> tuple[dict, list[tuple[Path, Path]]]:
        """The spec with host paths made visible in the chroot; outputs to copy back."""
        if self.chroot is None:
            return spec, []
        spec = dict(spec)
        inputs = self.root / "inputs"  # one place for the HOME: remembered paths stay valid
        inputs.mkdir(exist_ok=True)

        def share_in(value: str) -> str:
            if value.startswith("layer:") or not Path(value).is_file():
                return value
            copy = inputs / Path(value).name
            shutil.copy2(value, copy)
            self.host_paths[self.inside(copy)] = value
            return self.inside(copy)

        for key in ("open", "import_zip"):
            if spec.get(key):
                spec[key] = share_in(spec[key])
        if spec.get("styles"):
            spec["styles"] = [share_in(s) for s in spec["styles"]]
        back = []
        for key in ("save", "screenshot", "progress_screenshot", "error_screenshot"):
            if spec.get(key):
                inner = run_dir / f"{key}-{Path(spec[key]).name}"
                back.append((inner, Path(spec[key])))
                spec[key] = self.inside(inner)
        return spec, back

    def command(self) -> list[str]:
        krita = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", "krita", "--nosplash"]
        if self.chroot is None:
            return krita
        # xvfb-run -a in the chroot sees only the chroot's /tmp, but X's abstract sockets
        # are the host's: it picked :99 while the host's last Xvfb there was still going
        # away, and Krita could not connect. Pick a display free on both sides instead.
        krita[1:2] = ["-n", str(free_display(self.chroot))]
        # Krita needs /proc; a private mount namespace mounts it for this run only,
        # so nothing stays mounted inside the cached root.
        script = 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"'
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            str(self.chroot),
            *krita,
        ]

    def _launch(self, spec_path: Path, result: Path, log: Path, deadline: float) -> int:
        """One Krita process on the scenario until it has written ``result`` and quit,
        or ``deadline`` (monotonic) has passed; its exit status."""
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                self.command(),
                env=self.env(spec_path),
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            while proc.poll() is None and time.monotonic() < deadline:
                if result.exists():  # Krita should now quit; give it a moment
                    deadline = min(deadline, time.monotonic() + QUIT_GRACE)
                time.sleep(0.2)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def run(self, spec: dict, out_dir: Path, timeout: float = 240) -> dict:
        """Run one scenario in a fresh Krita process; the recorded facts."""
        out_dir.mkdir(parents=True, exist_ok=True)
        run_dir = out_dir
        if self.chroot is not None:
            run_dir = Path(tempfile.mkdtemp(prefix="impasto-krita-run-", dir=self.chroot / "tmp"))
        spec, back = self._share(spec, run_dir)
        spec_path = run_dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        log = out_dir / "krita.log"
        started = time.monotonic()
        written = run_dir / "result.json"
        returncode = self._launch(spec_path, written, log, started + timeout)
        if not written.exists() and NO_DISPLAY in log.read_text(errors="replace"):
            # Krita started before its X server was up (xvfb-run in a chroot; seen once in
            # a few full runs, Krita gone in 0 s): the test never reached the plug-in, so
            # it runs once more on a fresh display.
            returncode = self._launch(spec_path, written, log, time.monotonic() + timeout)
        self.runs += 1
        if run_dir != out_dir:  # facts, pixel dumps and outputs back to where tests look
            outputs = {inner for inner, _ in back}
            for path in run_dir.iterdir():
                if path.is_file() and path not in outputs:
                    shutil.copy2(path, out_dir / path.name)
            for inner, outer in back:
                if inner.exists():
                    outer.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(inner, outer)
            shutil.rmtree(run_dir, ignore_errors=True)
        result = out_dir / "result.json"
        if not result.exists():
            tail = log.read_text(errors="replace")[-3000:]
            raise AssertionError(
                f"Krita wrote no result (exit {returncode}, "
                f"{time.monotonic() - started:.0f} s); log tail:\n{tail}"
            )
        text = result.read_text()
        for inner, host in self.host_paths.items():  # facts name files as the host does
            text = text.replace(json.dumps(inner)[1:-1], json.dumps(host)[1:-1])
        facts = json.loads(text)
        facts["seconds"] = time.monotonic() - started
        return facts

    def close(self) -> None:
        """Remove a HOME made inside a chroot (a host HOME is the test's tmp_path)."""
        if self.chroot is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def pixels(out_dir: Path, name: str, facts: dict, channels: int = 4) -> np.ndarray:
    """A raw dump (BGRA, or 1-channel selection) as an (H, W, C) array."""
    depth = facts.get("color", ["RGBA", "U8"])[1]
    dtype = np.uint16 if depth == "U16" and channels == 4 else np.uint8
    data = np.fromfile(out_dir / name, dtype=dtype)
    return data.reshape(facts["height"], facts["width"], channels)


def write_png(src: Path, dest: Path, width: int, alpha_hole: bool = False) -> Path:
    """A small PNG from a test photo (optionally with a transparent corner)."""
    from PIL import Image

    img = Image.open(src).convert("RGBA")
    img = img.resize((width, round(img.height * width / img.width)), Image.Resampling.LANCZOS)
    if alpha_hole:
        hole = Image.new("RGBA", (width // 4, width // 4), (0, 0, 0, 0))
        img.paste(hole, (0, 0))
    img.save(dest)
    return dest


def free_display(chroot: Path) -> int:
    """An X display number with no lock file on the host or in ``chroot``, away from the
    :99 upward that host runs of ``xvfb-run -a`` take."""
    start = 200 + os.getpid() % 300
    # An X server in another root (a GIMP or another Krita chroot) leaves no lock file
    # here, but its abstract socket is listed in /proc/net/unix: Xvfb could not bind a
    # display taken that way and Krita found no display (seen once in a full run).
    listening = Path("/proc/net/unix").read_text(errors="replace")
    for n in range(start, start + 300):
        locked = any(Path(root, "tmp", f".X{n}-lock").exists() for root in ("/", chroot))
        if not locked and f"@/tmp/.X11-unix/X{n}\n" not in listening:
            return n
    raise RuntimeError("no free X display number between 200 and 800")
