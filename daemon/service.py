"""``impasto-daemon``: run the daemon in the foreground (service managers, daemonctl).

Owns what makes a process a good citizen: one daemon per endpoint (an flock'd lock file
holding the pid, which the kernel releases even after ``kill -9``, so a stale lock is
simply taken over), a rotating log file in the user's state folder, and SIGTERM/SIGINT
handlers that stop running jobs (they resume at the next start) and exit within seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import logging.handlers
import os
import signal
import socket
import sqlite3
import sys
from pathlib import Path

from impasto.daemon.jobs import DEFAULT_RETENTION
from impasto.daemon.limits import Limits, MiB
from impasto.shared import paths
from impasto.shared.errors import ImpastoError
from impasto.shared.options import DEFAULT_MAX_PIXELS
from impasto.shared.paths import read_pid

log = logging.getLogger("impasto.daemon")

LOG_BYTES = 10 * MiB  # per log file; LOG_BACKUPS older ones are kept beside it
LOG_BACKUPS = 3


class AlreadyRunning(ImpastoError):
    """Another daemon holds the lock of this endpoint."""


class PidLock:
    """An exclusive lock on the endpoint's lock file, with our pid written in it."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None
        self.previous_pid: int | None = None

    def acquire(self, endpoint: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError:
            pid = read_pid(self.path)
            os.close(fd)
            who = f"pid {pid}" if pid else "another process"
            raise AlreadyRunning(
                f"an Impasto daemon ({who}) already serves {endpoint}; stop it with "
                f"'impasto daemon stop' or choose another --endpoint (lock file {self.path})"
            ) from None
        self.previous_pid = read_pid(self.path)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{endpoint}\n".encode())
        os.fsync(fd)
        self.fd = fd

    def mark_ready(self) -> None:
        """Add a ``ready`` line once the socket is bound: how ``impasto daemon start``
        knows a CURVE daemon it cannot talk to (no authorised key here) is serving."""
        if self.fd is not None:
            os.write(self.fd, b"ready\n")
            os.fsync(self.fd)

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)  # closing drops the lock
        self.fd = None


def _lock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="impasto-daemon",
        description="Run the Impasto style-transfer daemon in the foreground.",
    )
    p.add_argument(
        "--endpoint",
        default=None,
        help=f"where to listen (default $IMPASTO_ENDPOINT or {paths.DEFAULT_ENDPOINT})",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="comma-separated devices, one worker each: auto, cpu, cuda, cuda:1, mps",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse images with more pixels than this (default %(default)s)",
    )
    p.add_argument(
        "--retention",
        type=float,
        default=DEFAULT_RETENTION,
        help="seconds a finished job's result stays attachable (default %(default)s)",
    )
    sec = p.add_mutually_exclusive_group()
    sec.add_argument(
        "--curve",
        action="store_true",
        help="require CURVE keys (always on for non-loopback addresses; see 'impasto keys')",
    )
    sec.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback address without CURVE (anyone on the network can use it)",
    )
    p.add_argument(
        "--weights-dir",
        default=None,
        help="folder of extra NAME.pth weights clients may choose by NAME "
        "(default $XDG_DATA_HOME/impasto/weights)",
    )
    defaults = Limits()
    p.add_argument(
        "--max-queued-jobs",
        type=int,
        default=defaults.jobs_per_client,
        help="queued jobs per client identity (default %(default)s)",
    )
    p.add_argument(
        "--max-queued-jobs-total",
        type=int,
        default=defaults.jobs_total,
        help="queued jobs in all (default %(default)s)",
    )
    p.add_argument(
        "--max-queued-mb",
        type=int,
        default=defaults.bytes_per_client // MiB,
        help="MiB of queued input images per client identity (default %(default)s)",
    )
    p.add_argument(
        "--max-queued-mb-total",
        type=int,
        default=defaults.bytes_total // MiB,
        help="MiB of queued input images in all (default %(default)s)",
    )
    p.add_argument("--log-file", default=None, help="log file (default: in the state folder)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--no-warmup",
        action="store_true",
        help="load the model on the first job (and estimate at a default speed until then)",
    )
    p.add_argument(
        "--memory-budget",
        type=int,
        metavar="MB",
        help="peak memory one job may use, in MiB; bigger pictures are tiled or refused "
        "(default: on the CPU half the RAM, at least 3 GB, at most three quarters of what "
        "is free; 90%% of a GPU's free memory)",
    )
    ray = p.add_argument_group("Ray cluster (pip install 'impasto[cluster]')")
    ray.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run jobs on Ray actors of the cluster at this address (auto: a private cluster "
        "on this machine, started and stopped with the daemon); --device is then ignored",
    )
    ray.add_argument(
        "--ray-actors", type=int, help="number of actors (default: one per GPU, or per CPU slot)"
    )
    ray.add_argument(
        "--ray-cpus", type=float, default=1.0, help="CPUs per actor on a cluster without GPUs"
    )
    return p


def weights_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.weights_dir).expanduser() if args.weights_dir else None


def make_backend(args: argparse.Namespace):
    """The Ray backend when --ray is given, else None (the server's embedded workers)."""
    if not args.ray:
        return None
    from impasto.daemon import cluster

    cluster.require_ray(args.ray)
    if args.ray_actors is not None and args.ray_actors < 1:
        raise ImpastoError("--ray-actors must be at least 1")
    return cluster.RayBackend(
        args.ray,
        actors=args.ray_actors,
        cpus_per_actor=args.ray_cpus,
        max_pixels=args.max_pixels,
        warmup=not args.no_warmup,
        name=f"impasto-{socket.gethostname()}-{os.getpid()}",  # unique in the cluster
        weights_dir=weights_dir(args),
    )


def setup_logging(log_file: Path, level: str) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT or a shutdown request; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        endpoint = paths.check_endpoint(args.endpoint or paths.default_endpoint())
        if args.max_pixels < 16 * 16:
            raise ImpastoError(f"--max-pixels {args.max_pixels} is too small")
        if args.retention < 0:
            raise ImpastoError("--retention must not be negative")
        limits = Limits(
            jobs_per_client=args.max_queued_jobs,
            jobs_total=args.max_queued_jobs_total,
            bytes_per_client=args.max_queued_mb * MiB,
            bytes_total=args.max_queued_mb_total * MiB,
        )
        if min(limits.jobs_per_client, limits.jobs_total) < 1:
            raise ImpastoError("--max-queued-jobs and --max-queued-jobs-total must be at least 1")
        if args.memory_budget is not None:
            if args.memory_budget < 256:
                raise ImpastoError(f"--memory-budget {args.memory_budget} MB is too small")
            # The engine plans every job against this one setting (memory.default_budget)
            # in each worker thread of this process; Ray actors read their own nodes'.
            os.environ["IMPASTO_MEMORY_BUDGET_MB"] = str(args.memory_budget)
        loopback = paths.is_loopback(endpoint)
        curve = args.curve or (not loopback and not args.insecure)
        backend = make_backend(args)
        lock = PidLock(paths.lock_file(endpoint))
        lock.acquire(endpoint)
    except (ImpastoError, ValueError) as exc:
        print(f"impasto-daemon: {exc}", file=sys.stderr)
        return 1

    log_path = Path(args.log_file) if args.log_file else paths.log_file(endpoint)
    setup_logging(log_path, args.log_level)
    if lock.previous_pid and lock.previous_pid != os.getpid():
        log.info("took over the stale lock of pid %s", lock.previous_pid)
    if not loopback and not curve:
        log.warning("serving %s WITHOUT authentication (--insecure)", endpoint)

    from impasto.daemon.server import Server

    devices = [d.strip() for d in args.device.split(",") if d.strip()] or ["auto"]
    try:
        server = Server(
            endpoint,
            devices=devices,
            max_pixels=args.max_pixels,
            retention=args.retention,
            curve=curve,
            warmup=not args.no_warmup,
            limits=limits,
            weights_dir=weights_dir(args),
            backend=backend,
        )
        server.bind()
    except (ImpastoError, OSError, sqlite3.Error) as exc:
        print(f"impasto-daemon: {exc}", file=sys.stderr)
        log.error("%s", exc)
        lock.release()
        return 1

    def on_signal(signum, _frame):
        log.info("received %s", signal.Signals(signum).name)
        if server._stopping.is_set():  # a second signal: the journal is crash-safe anyway
            log.warning("second signal: exiting now")
            os._exit(1)
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lock.mark_ready()
    print(f"impasto-daemon: serving {endpoint} (pid {os.getpid()}, log {log_path})", flush=True)
    log.info("daemon pid %d serving %s, devices %s", os.getpid(), endpoint, devices)
    try:
        server.serve()
    except Exception:
        log.exception("the daemon loop failed")
        return 1
    finally:
        lock.release()
    if server.backend.busy():
        # A job still inside torch would race the interpreter's teardown (seen as SIGABRT);
        # everything worth keeping is in the journal, so leave without finalising.
        logging.shutdown()
        os._exit(0)
    return 0
