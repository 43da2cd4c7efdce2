"""Fixtures for tests that need a real daemon: a real process on a real loopback port.

``daemon`` is session-scoped (the model loads once); tests that kill or stop a daemon
start their own with ``spawn_daemon``. Each daemon has its own XDG folders, so lock,
log and key files never touch the user's or each other's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq

from impasto.plugin.client import Client, Progress
from impasto.shared import keys
from impasto.shared.errors import ImpastoError

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DaemonProcess:
    endpoint: str
    proc: subprocess.Popen
    state_dir: Path  # $XDG_STATE_HOME of the daemon (its files are in state_dir/impasto)
    config_dir: Path  # $XDG_CONFIG_HOME of the daemon
    env: dict

    @property
    def log_text(self) -> str:
        logs = sorted((self.state_dir / "impasto").glob("*.log"))
        return "\n".join(p.read_text(errors="replace") for p in logs)

    def client(self, timeout: float = 10.0, **kwargs) -> Client:
        return Client(self.endpoint, timeout=timeout, **kwargs)

    def wait_until_ready(self, timeout: float = START_TIMEOUT, model: bool = False) -> dict:
        """Poll status until the daemon answers (and, with ``model``, has loaded it)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {out}")
            client = self.client(timeout=1.0)
            try:
                info = client.status()
                if not model or info["model_loaded"] or info["engine_error"]:
                    return info
            except ImpastoError as exc:
                last = exc
            finally:
                client.close()
            time.sleep(0.2)
        raise RuntimeError(f"daemon on {self.endpoint} not ready in {timeout}s: {last}")

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def daemon_env(root: Path) -> dict:
    env = dict(os.environ)
    env["XDG_STATE_HOME"] = str(root / "state")
    env["XDG_CONFIG_HOME"] = str(root / "config")
    env["XDG_CACHE_HOME"] = str(root / "cache")
    env.pop("IMPASTO_ENDPOINT", None)
    return env


def spawn_daemon(
    root: Path,
    *args: str,
    endpoint: str | None = None,
    env: dict | None = None,
    wait: bool = True,
) -> DaemonProcess:
    """Start ``python -m impasto.daemon`` with its own XDG folders under ``root``."""
    endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
    env = env or daemon_env(root)
    cmd = [sys.executable, "-m", "impasto.daemon", "--endpoint", endpoint, *args]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    daemon = DaemonProcess(
        endpoint, proc, Path(env["XDG_STATE_HOME"]), Path(env["XDG_CONFIG_HOME"]), env
    )
    if wait:
        daemon.wait_until_ready()
    return daemon


def first_progress(client: Client, job: str, timeout: float = 120.0) -> None:
    """Wait until ``job`` reports progress (it runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(isinstance(e, Progress) and e.job_id == job for e in client.poll(0.5)):
            return
    raise AssertionError(f"no progress from job {job} within {timeout}s")


def give_token_to_chroot(root: Path) -> None:
    """An editor in a chroot runs as this user but has its own /tmp: put the local token
    (shared.keys) where the user's runtime folder would have it there."""
    runtime = root / "tmp" / f"impasto-{os.getuid()}"
    runtime.mkdir(mode=0o700, exist_ok=True)
    (runtime / "token").write_text((keys.local_token(create=True) or "") + "\n")


def local_dealer(endpoint: str) -> zmq.Socket:
    """A bare DEALER socket proving it is this user (the local token as PLAIN password)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.plain_username = keys.LOCAL_USER.encode()
    sock.plain_password = (keys.local_token() or "").encode()
    sock.connect(endpoint)
    return sock


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    """One real daemon for the session, its model warm (the first job starts at once)."""
    proc = spawn_daemon(tmp_path_factory.mktemp("daemon"), "--retention", "600")
    proc.wait_until_ready(model=True)
    yield proc
    proc.stop()


@pytest.fixture
def client(daemon):
    c = daemon.client()
    c.connect()
    yield c
    c.close()
