"""GIMP's Cancel SIGKILLs the plug-in; its watchdog must then cancel the daemon's job.

A real daemon, a real long job, and a stand-in plug-in process (plain Python running
the watchdog's ``start`` exactly as the plug-in does) that is SIGKILLed the way GIMP
does it. The watchdog needs no GIMP, so this runs on the host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from impasto.plugin.client import Failed, Result
from impasto.shared.options import JobOptions
from impasto.shared.rawimage import RawImage

PLUGIN_DIR = Path(__file__).resolve().parent.parent / "plugin" / "gimp" / "impasto-style-transfer"
STAND_IN = (
    "import sys, time\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import impasto_gimp_watchdog as watchdog\n"
    "guard = watchdog.start(sys.argv[2], sys.argv[3])\n"
    "print(guard.pid, flush=True)\n"
    "time.sleep(120)\n"
)


def _raw(path: Path, size: tuple[int, int]) -> RawImage:
    return RawImage.from_numpy(np.asarray(Image.open(path).convert("RGB").resize(size)))


def _finish(client, job_id: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in client.poll(0.5):
            if isinstance(event, Result | Failed) and event.job_id == job_id:
                return event
    raise AssertionError(f"job {job_id} did not end within {timeout}s")


def test_killed_plugin_gets_its_job_cancelled(client, daemon, tubingen, starry_night):
    options = JobOptions(size=64, iterations=5000, frames=0, scales=1)
    job_id = client.submit(_raw(tubingen, (64, 48)), [_raw(starry_night, (64, 50))], options)
    plugin = subprocess.Popen(
        [sys.executable, "-c", STAND_IN, str(PLUGIN_DIR), daemon.endpoint, job_id],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # GIMP kills the plug-in's process group
    )
    assert plugin.stdout is not None  # stdout=PIPE
    watchdog_pid = int(plugin.stdout.readline())
    time.sleep(1.0)
    os.killpg(plugin.pid, signal.SIGKILL)
    plugin.wait()
    end = _finish(client, job_id)
    assert isinstance(end, Result) and end.cancelled, end
    assert end.iterations < 5000
    for _ in range(50):  # the watchdog exits once it has cancelled
        if not _alive(watchdog_pid):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the watchdog is still running")


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for a reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_stopped_watchdog_leaves_a_finished_job_alone(client, daemon, tubingen, starry_night):
    sys.path.insert(0, str(PLUGIN_DIR))
    try:
        import impasto_gimp_watchdog as watchdog
    finally:
        sys.path.remove(str(PLUGIN_DIR))
    options = JobOptions(size=64, iterations=3, frames=0, scales=1)
    job_id = client.submit(_raw(tubingen, (64, 48)), [_raw(starry_night, (64, 50))], options)
    guard = watchdog.start(daemon.endpoint, job_id)
    end = _finish(client, job_id)
    watchdog.stop(guard)
    assert guard.returncode == -signal.SIGTERM
    assert isinstance(end, Result) and not end.cancelled and end.iterations == 3
