"""Test-side helpers for running a real Krita under Xvfb with a throwaway HOME.

``KritaHome`` installs the Impasto plug-in (through the real installer) and the
self-test plug-in (tests/krita_selftest.py) into a fresh HOME; ``run`` writes a
scenario, starts ``xvfb-run krita``, and returns the facts the scenario recorded,
with the raw pixel dumps loaded as numpy arrays.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from impasto.plugin import install_krita

HERE = Path(__file__).resolve().parent
SELFTEST = HERE / "krita_selftest.py"
QUIT_GRACE = 15.0  # seconds Krita may take to exit after writing its result
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
    """A HOME with the plug-in installed and enabled, reusable across Krita runs."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.config = self.root / ".config"
        self.data = self.root / ".local" / "share"
        self.pykrita = self.data / "krita" / "pykrita"
        self.kritarc = self.config / "kritarc"
        self.plugin = install_krita.install(self.pykrita, kritarc=self.kritarc)
        selftest = self.pykrita / "impasto_selftest"
        selftest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SELFTEST, selftest / "__init__.py")
        (self.pykrita / "impasto_selftest.desktop").write_text(SELFTEST_DESKTOP)
        with self.kritarc.open("a") as fh:  # the installer made the [python] group last
            fh.write("enable_impasto_selftest=true\n")
        self.runs = 0

    def env(self, spec: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "IMPASTO_", "QT_"))}
        env.update(
            HOME=str(self.root),
            XDG_CONFIG_HOME=str(self.config),
            XDG_DATA_HOME=str(self.data),
            XDG_CACHE_HOME=str(self.root / ".cache"),
            XDG_STATE_HOME=str(self.root / ".local" / "state"),
            IMPASTO_KRITA_SPEC=str(spec),
            LANG="C.UTF-8",
        )
        return env

    def run(self, spec: dict, out_dir: Path, timeout: float = 240) -> dict:
        """Run one scenario in a fresh Krita process; the recorded facts."""
        out_dir.mkdir(parents=True, exist_ok=True)
        spec_path = out_dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        log = out_dir / "krita.log"
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", "krita", "--nosplash"]
        started = time.monotonic()
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                cmd,
                env=self.env(spec_path),
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            result = out_dir / "result.json"
            deadline = started + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                if result.exists():  # Krita should now quit; give it a moment
                    deadline = min(deadline, time.monotonic() + QUIT_GRACE)
                time.sleep(0.2)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.runs += 1
        if not result.exists():
            tail = log.read_text(errors="replace")[-3000:]
            raise AssertionError(
                f"Krita wrote no result (exit {proc.returncode}, "
                f"{time.monotonic() - started:.0f} s); log tail:\n{tail}"
            )
        facts = json.loads(result.read_text())
        facts["seconds"] = time.monotonic() - started
        return facts


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
    img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    if alpha_hole:
        hole = Image.new("RGBA", (width // 4, width // 4), (0, 0, 0, 0))
        img.paste(hole, (0, 0))
    img.save(dest)
    return dest
