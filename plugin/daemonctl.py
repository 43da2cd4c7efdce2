"""Start, stop and query a local daemon process from any client (CLI, Krita, GIMP).

No torch here: the daemon runs in its own process, started detached so it outlives the
editor that started it. Inside Krita or GIMP ``sys.executable`` is the editor, not
Python, so the interpreter is configurable; without one we use ``impasto-daemon`` from
PATH, or this interpreter when it is a Python.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from impasto.shared import paths
from impasto.shared.errors import DAEMON_UNAVAILABLE, TIMEOUT, ImpastoError

START_TIMEOUT = 60.0


def daemon_command(endpoint: str, python: str | None = None, args: Sequence[str] = ()) -> list[str]:
    """The command line that runs a daemon for ``endpoint`` in the foreground."""
    tail = ["--endpoint", endpoint, *args]
    if python:
        return [python, "-m", "impasto.daemon", *tail]
    if "python" in Path(sys.executable).name.lower():
        return [sys.executable, "-m", "impasto.daemon", *tail]
    script = shutil.which("impasto-daemon")
    if script:
        return [script, *tail]
    raise ImpastoError(
        "cannot start the Impasto daemon: no Python interpreter configured and no "
        "'impasto-daemon' on PATH (install impasto with pip, or set the Python path)",
        DAEMON_UNAVAILABLE,
    )


def status(endpoint: str | None = None, timeout: float = 2.0) -> dict[str, Any] | None:
    """The daemon's status, or None if nothing answers within ``timeout``."""
    from impasto.plugin.client import Client

    client = Client(endpoint, timeout=timeout)
    try:
        return client.status()
    except ImpastoError as exc:
        if exc.code == DAEMON_UNAVAILABLE:
            return None
        raise
    finally:
        client.close()


def start(
    endpoint: str | None = None,
    python: str | None = None,
    args: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start a detached daemon unless one answers already; return its status.

    ``args`` are extra impasto-daemon flags (--device, --max-pixels...). Raises
    ImpastoError (daemon_unavailable) with the daemon's own last words if it exits
    during start-up (a second daemon, a port in use...), or (timeout) if it is silent.
    """
    endpoint = paths.check_endpoint(endpoint or paths.default_endpoint())
    running = status(endpoint, timeout=1.0)
    if running is not None:
        return running
    cmd = daemon_command(endpoint, python, args)
    paths.state_dir().mkdir(parents=True, exist_ok=True)
    start_log = paths.state_dir() / f"daemon-{paths.endpoint_slug(endpoint)}.start.log"
    with open(start_log, "wb") as out:
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | 0x00000008
        else:
            kwargs["start_new_session"] = True  # survives the editor's process group
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            close_fds=True,
            **kwargs,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            words = start_log.read_text(errors="replace").strip().splitlines()
            last = words[-1] if words else f"exit status {proc.returncode}"
            raise ImpastoError(f"the Impasto daemon did not start: {last}", DAEMON_UNAVAILABLE)
        info = status(endpoint, timeout=0.5)
        if info is not None:
            return info
        time.sleep(0.1)
    raise ImpastoError(
        f"the Impasto daemon started (pid {proc.pid}) but did not answer on {endpoint} "
        f"within {timeout:g}s; see {paths.log_file(endpoint)}",
        TIMEOUT,
    )


def daemon_pid(endpoint: str | None = None) -> int | None:
    """The pid in the endpoint's lock file, if that process is alive."""
    pid = paths.read_pid(paths.lock_file(endpoint or paths.default_endpoint()))
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return pid


def lock_is_held(path: Path) -> bool:
    """True if some process holds the flock on a daemon's lock file (a daemon serves)."""
    if sys.platform == "win32" or not path.exists():
        return path.exists()
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True  # someone holds it exclusively: a live daemon
    finally:
        os.close(fd)  # closing drops our shared lock, if we got it
    return False


def is_our_daemon(pid: int) -> bool:
    """True if ``pid`` runs impasto's daemon (its command line says so), where /proc
    lets us look; elsewhere the held lock is the only evidence."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self/cmdline").exists():
        return True
    try:
        words = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"impasto.daemon" in w or w.endswith(b"impasto-daemon") for w in words)


def daemon_pid_to_signal(endpoint: str) -> int | None:
    """The pid to SIGTERM, only if the lock is held and that pid is our daemon: a stale
    lock file (left by kill -9) may name a pid the system has since given to another
    program, which must never be signalled."""
    lock = paths.lock_file(endpoint)
    pid = daemon_pid(endpoint)
    if pid is None or pid == os.getpid() or not lock_is_held(lock) or not is_our_daemon(pid):
        return None
    return pid


def bound(endpoint: str) -> int | None:
    """The pid of a daemon that holds the endpoint's lock and has bound its socket (its
    lock file says ``ready``), even one this machine cannot talk to (CURVE)."""
    lock = paths.lock_file(endpoint)
    try:
        lines = lock.read_text().split("\n")
    except OSError:
        return None
    if "ready" not in lines or not lock_is_held(lock):
        return None
    return daemon_pid(endpoint)


def stop(endpoint: str | None = None, timeout: float = 30.0) -> bool:
    """Stop the daemon: a shutdown request, else SIGTERM to the pid in its lock file, if
    that lock is held and the pid is an Impasto daemon.

    Returns False if no daemon was running. Raises ImpastoError (timeout) if it is
    still alive after ``timeout`` seconds.
    """
    from impasto.plugin.client import Client

    endpoint = paths.check_endpoint(endpoint or paths.default_endpoint())
    pid = daemon_pid_to_signal(endpoint)
    client = Client(endpoint, timeout=2.0)
    try:
        client.shutdown()
        asked = True
    except ImpastoError:
        asked = False
    finally:
        client.close()
    if not asked:
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gone = pid is None or daemon_pid(endpoint) is None
        if gone and status(endpoint, timeout=0.3) is None:
            return True
        time.sleep(0.1)
    raise ImpastoError(f"the daemon on {endpoint} did not stop within {timeout:g}s", TIMEOUT)
