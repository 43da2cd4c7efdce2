"""A real local Ray cluster for tests and benchmarks: the daemon's own private head
(daemon/cluster/localhead.py) with 2 CPUs, a small object store and token auth on."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from impasto.daemon.cluster.localhead import LocalHead
from impasto.daemon.cluster.localhead import start_head as start_local_head


def start_head(num_cpus: int = 2, object_store_mb: int = 150) -> LocalHead:
    """This machine has 24 GB shared by everyone: a small object store."""
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    return start_local_head(num_cpus, object_store_mb, env)


def kill_actor(head: LocalHead, name: str, namespace: str = "impasto") -> None:
    """``ray.kill`` a named actor from a driver process of its own, as a crash would end
    it (Ray reads its auth token once per process, so this process stays out of Ray)."""
    code = (
        "import sys, ray\n"
        "ray.init(address=sys.argv[1], namespace=sys.argv[3], log_to_driver=False)\n"
        "ray.kill(ray.get_actor(sys.argv[2]))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, head.address, name, namespace],
        env={**os.environ, **head.env},
        check=True,
        timeout=120,
        capture_output=True,
    )
