"""A private Ray head on this machine, for ``--ray auto`` where no cluster runs (and for
the tests): ``ray start --head --block`` in its own process group, every port chosen
free so it never meets another cluster here, its files in a temp folder of its own;
``stop()`` ends exactly that process group.

A child process rather than ``ray.init()`` starting the cluster inside the daemon: the
in-process start held the daemon's loop for ~13 s (clients timed out on hello) and left
Ray's agent processes behind when the daemon exited (seen on this project's machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

READY_LINE = "block forever"  # what `ray start --block` prints once every part is up


def ray_command() -> list[str]:
    """The ``ray`` CLI of this interpreter's Ray: its script beside the interpreter, or
    the module itself where Ray comes from another environment (a .pth file)."""
    script = Path(sys.executable).with_name("ray")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ray.scripts.scripts"]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free now (held together while chosen, so never equal)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


@dataclass
class LocalHead:
    address: str
    env: dict[str, str]  # what a driver needs on top of os.environ (a token, if set)
    proc: subprocess.Popen
    temp_dir: Path
    log: Path

    def stop(self) -> None:
        """Kill the head's process group (ours alone) at once; its workers exit with it.

        No SIGTERM first: a head shutting down gracefully killed the still-running daemon
        that had been its driver (exit -6, seen here), and KILL leaves nothing behind.
        """
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10.0)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_head(
    num_cpus: int | None = None,
    object_store_mb: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> LocalHead:
    """Start a head node (all CPUs and Ray's default object store unless given; ``env``
    e.g. RAY_AUTH_MODE/RAY_AUTH_TOKEN) and return once it accepts drivers."""
    env = dict(env or {})
    temp_dir = Path(tempfile.mkdtemp(prefix="iray", dir="/tmp"))  # short: socket paths
    port, client_port, agent_port = free_ports(3)
    cmd = [
        *ray_command(),
        "start",
        "--head",
        "--block",
        "--disable-usage-stats",
        "--include-dashboard=false",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--ray-client-server-port={client_port}",
        f"--dashboard-agent-listen-port={agent_port}",
        f"--temp-dir={temp_dir}",
    ]
    if num_cpus is not None:
        cmd += [f"--num-cpus={num_cpus}", "--num-gpus=0"]
    if object_store_mb is not None:
        cmd.append(f"--object-store-memory={object_store_mb * 2**20}")
    log = temp_dir / "head.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    head = LocalHead(f"127.0.0.1:{port}", env, proc, temp_dir, log)
    deadline = time.monotonic() + timeout
    while READY_LINE not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            text = log.read_text(errors="replace")[-3000:]
            head.stop()
            raise RuntimeError(f"ray start --head failed or hung:\n{text}")
        time.sleep(0.3)
    return head
