"""`impasto daemon start|stop|status`: manage the background daemon."""

from __future__ import annotations

import argparse
import json
import time

from impasto.plugin import daemonctl
from impasto.plugin.hostjob import format_eta
from impasto.shared import paths
from impasto.shared.errors import DAEMON_UNAVAILABLE, TIMEOUT, ImpastoError

# daemonctl.start polls status, which a CURVE daemon never answers without an authorised
# key here; it binds in ~2 s on the 2-core test machine, so this much waiting is plenty.
REMOTE_START_S = 10.0


def run(args: argparse.Namespace) -> int:
    endpoint = paths.check_endpoint(args.endpoint or paths.default_endpoint())
    if args.action == "start":
        return _start(endpoint, args)
    if args.action == "stop":
        stopped = daemonctl.stop(endpoint)
        print(f"stopped the daemon on {endpoint}" if stopped else f"no daemon on {endpoint}")
        return 0
    return _status(endpoint, args.json)


def _start(endpoint: str, args: argparse.Namespace) -> int:
    extra: list[str] = []
    if args.device:
        extra += ["--device", args.device]
    if args.curve:
        extra.append("--curve")
    if args.insecure:
        extra.append("--insecure")
    if args.ray:
        from impasto.daemon.cluster import require_ray

        require_ray()
        extra += ["--ray", args.ray]
    if args.ray_actors:
        extra += ["--ray-actors", str(args.ray_actors)]
    already = daemonctl.status(endpoint, timeout=1.0)
    if already is None and paths.is_loopback(endpoint) and daemonctl.bound(endpoint):
        # Our daemon holds the endpoint but was slow to answer (a busy machine: seen in a
        # loaded CI run): ask again with time to spare instead of starting a second one.
        already = daemonctl.status(endpoint, timeout=10.0) or {"pid": daemonctl.bound(endpoint)}
    if already is None and not paths.is_loopback(endpoint):
        info = _start_remote(endpoint, extra)
        if info is not None:
            print(f"daemon started on {endpoint} (pid {info['pid']}); it takes CURVE clients")
            print(f"log: {paths.log_file(endpoint)}")
            return 0
    info = already or daemonctl.start(endpoint, args=extra)
    verb = "already running" if already else "started"
    print(f"daemon {verb} on {endpoint} (pid {info.get('pid', '?')})")
    print(f"log: {paths.log_file(endpoint)}")
    return 0


def _start_remote(endpoint: str, extra: list[str]) -> dict | None:
    """A non-loopback daemon is CURVE-only, so this machine may have no key it accepts:
    readiness is its lock file saying ``ready``, not an answered status request."""
    if daemonctl.bound(endpoint):
        return {"pid": daemonctl.bound(endpoint)}
    try:
        daemonctl.start(endpoint, args=extra, timeout=REMOTE_START_S)
    except ImpastoError as exc:
        if exc.code != TIMEOUT:
            raise
    deadline = time.monotonic() + REMOTE_START_S
    while time.monotonic() < deadline:
        pid = daemonctl.bound(endpoint)
        if pid:
            return {"pid": pid}
        time.sleep(0.2)
    return None


def _status(endpoint: str, as_json: bool) -> int:
    info = daemonctl.status(endpoint)
    if info is None:
        raise ImpastoError(
            f"no daemon answers on {endpoint} (start one with `impasto daemon start`)",
            DAEMON_UNAVAILABLE,
        )
    if as_json:
        print(json.dumps(info, indent=2, sort_keys=True, default=str))
        return 0
    print(f"endpoint:  {info.get('endpoint', endpoint)}")
    for key in ("version", "pid", "devices", "model_loaded", "queued", "running"):
        if key in info:
            print(f"{key + ':':<10} {_show(info[key])}")
    if "uptime" in info:
        print(f"uptime:    {format_eta(info['uptime'])}")
    if "memory" in info:
        print(f"memory:    {_show(info['memory'])}")
    for actor in info.get("cluster", {}).get("actors", []):
        print(_actor_line(actor))
    print(f"log:       {paths.log_file(endpoint)}")
    return 0


def _actor_line(actor: dict) -> str:
    """``actor impasto-7-0 on gpu3 (cuda:0, float32): ready, queue 0, running 0004-…``"""
    running = actor.get("running") or "nothing"
    where = f"on {actor.get('node') or '?'} ({actor.get('device') or '?'})"
    return (
        f"actor:     {actor.get('name')} {where}: {actor.get('state')}, "
        f"queue {actor.get('queue', 0)}, running {running}, done {actor.get('done', 0)}"
        + (f", error {actor['error']}" if actor.get("error") else "")
    )


def _show(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_show(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_show(v) for v in value) or "none"
    return str(value)
