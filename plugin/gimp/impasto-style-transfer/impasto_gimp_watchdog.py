"""Cancels the daemon's job when GIMP kills the plug-in (its progress bar's Cancel).

GIMP answers Cancel by closing the plug-in: a quit message, then SIGKILL 10 ms later,
to the plug-in's process group. So the plug-in cannot tell the daemon itself; this
small process, started in its own session, waits for its parent (the plug-in) to
vanish and then cancels the job so the daemon does not keep computing for nobody.
The plug-in stops it once the job has ended normally.

    python3 impasto_gimp_watchdog.py ENDPOINT JOB_ID PLUGIN_PID
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

POLL_SECONDS = 0.2


def start(endpoint: str, job_id: str) -> subprocess.Popen:
    """Start a watchdog for this process's job (in its own session, so it survives)."""
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), endpoint, job_id, str(os.getpid())],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(watchdog: subprocess.Popen | None) -> None:
    """The job ended while the plug-in lived: nothing to cancel."""
    if watchdog is not None and watchdog.poll() is None:
        watchdog.terminate()
        watchdog.wait(timeout=5)


def main(argv: list[str]) -> int:
    endpoint, job_id, parent = argv[1], argv[2], int(argv[3])
    while os.getppid() == parent:  # reparented once the plug-in is gone
        time.sleep(POLL_SECONDS)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from impasto.plugin.client import Client
    from impasto.shared.errors import ImpastoError

    client = Client(endpoint, timeout=5.0, name="impasto-gimp-watchdog")
    try:
        client.cancel(job_id)
    except ImpastoError:
        return 1  # the job already ended, or the daemon is gone: nothing left to stop
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
