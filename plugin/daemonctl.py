"""Start, stop and query a local daemon process from any client (CLI, Krita, GIMP).

No torch here: the daemon runs in its own process, started detached so it outlives the
editor that started it. Inside Krita or GIMP ``sys.executable`` is the editor, not
Python, and often one without torch: ``impasto install-plugin`` records the command
that runs a daemon (``record_daemon_command``), which the plug-ins use to start one.
"""

from __future__ import annotations

import importlib.util
import json
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


COMMAND_FILE = "daemon-command.json"  # in the config folder: how to run a daemon here


def record_daemon_command(python: str | None = None, config_dir: Path | None = None) -> Path:
    """Remember how to start a daemon on this machine: this interpreter (which has
    torch) with ``-m impasto.daemon``. Called whenever ``impasto install-plugin`` runs,
    because the editors' own Python (Krita's, GIMP's) usually has no torch."""
    folder = Path(config_dir) if config_dir is not None else paths.config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / COMMAND_FILE
    command = [python or sys.executable, "-m", "impasto.daemon"]
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps({"command": command}, indent=1) + "\n")
    tmp.replace(target)
    return target


def recorded_command() -> list[str] | None:
    """The command ``record_daemon_command`` wrote, if it still points at a program."""
    try:
        command = json.loads((paths.config_dir() / COMMAND_FILE).read_text())["command"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not command or not all(isinstance(a, str) for a in command):
        return None
    return command if Path(command[0]).exists() else None


def daemon_command(endpoint: str, python: str | None = None, args: Sequence[str] = ()) -> list[str]:
    """The command line that runs a daemon for ``endpoint`` in the foreground.

    In order: the given interpreter, this interpreter when it is a Python that has
    torch (the CLI), the recorded command (an editor), ``impasto-daemon`` on PATH."""
    tail = ["--endpoint", endpoint, *args]
    if python:
        return [python, "-m", "impasto.daemon", *tail]
    if "python" in Path(sys.executable).name.lower() and importlib.util.find_spec("torch"):
        return [sys.executable, "-m", "impasto.daemon", *tail]
    recorded = recorded_command()
    if recorded:
        return [*recorded, *tail]
    script = shutil.which("impasto-daemon")
    if script:
        return [script, *tail]
    raise ImpastoError(
        "cannot start the Impasto daemon: no start command recorded and no "
        "'impasto-daemon' on PATH (run `impasto install-plugin` once from the Python "
        "where impasto and torch are installed, or start it with `impasto daemon start`)",
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


def _start_log(endpoint: str) -> Path:
    return paths.state_dir() / f"daemon-{paths.endpoint_slug(endpoint)}.start.log"


def launch(
    endpoint: str,
    python: str | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start a detached daemon process and return at once (a GUI keeps drawing);
    ``launch_failure`` and a status request then tell how it is doing."""
    endpoint = paths.check_endpoint(endpoint)
    if not (paths.is_loopback(endpoint) or paths.is_wildcard(endpoint)):
        raise ImpastoError(
            f"{endpoint} is not on this machine: start the daemon there", DAEMON_UNAVAILABLE
        )
    cmd = daemon_command(endpoint, python, args)
    paths.state_dir().mkdir(parents=True, exist_ok=True)
    with open(_start_log(endpoint), "wb") as out:
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | 0x00000008
        else:
            kwargs["start_new_session"] = True  # survives the editor's process group
        try:
            return subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                close_fds=True,
                **kwargs,
            )
        except OSError as exc:
            raise ImpastoError(
                f"cannot start the Impasto daemon ({' '.join(cmd)}): {exc}", DAEMON_UNAVAILABLE
            ) from None


def launch_failure(proc: subprocess.Popen, endpoint: str) -> ImpastoError | None:
    """None while the launched daemon lives; else an error with its last words."""
    if proc.poll() is None:
        return None
    try:
        words = _start_log(endpoint).read_text(errors="replace").strip().splitlines()
    except OSError:
        words = []
    last = words[-1] if words else f"exit status {proc.returncode}"
    return ImpastoError(f"the Impasto daemon did not start: {last}", DAEMON_UNAVAILABLE)


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
    # A daemon in the lock file that is slow to answer (a busy machine) is not none: wait
    # for it instead of launching a second one that would only find the lock taken.
    proc = None if _daemon_alive(endpoint) else launch(endpoint, python, args, env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        failure = launch_failure(proc, endpoint) if proc is not None else None
        if failure is not None:
            raise failure
        info = status(endpoint, timeout=0.5)
        if info is not None:
            return info
        time.sleep(0.1)
    pid = proc.pid if proc is not None else daemon_pid(endpoint)
    raise ImpastoError(
        f"the Impasto daemon (pid {pid}) did not answer on {endpoint} "
        f"within {timeout:g}s; see {paths.log_file(endpoint)}",
        TIMEOUT,
    )


def _daemon_alive(endpoint: str) -> bool:
    """The lock file names a live process that is an Impasto daemon (not a reused pid)."""
    pid = daemon_pid(endpoint)
    if pid is None:
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc to ask (macOS): trust the live pid
    return b"impasto" in command


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


def daemon_pid_to_signal(endpoint: str) -> int | None:
    """The pid to SIGTERM, only if the lock is held and that pid is our daemon: a stale
    lock file (left by kill -9) may name a pid the system has since given to another
    program, which must never be signalled."""
    lock = paths.lock_file(endpoint)
    pid = daemon_pid(endpoint)
    if pid is None or pid == os.getpid() or not lock_is_held(lock) or not _daemon_alive(endpoint):
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
