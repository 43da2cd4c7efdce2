"""The Ray backend against the embedded workers: prints Markdown tables for BENCHMARKS.md.

1. Throughput of N concurrent jobs (one client each) on the embedded daemon with one
   worker, and on the Ray backend with 1 and with 2 actors.
2. Submit to first progress frame: embedded worker against the Ray path (streaming
   generator, object store, one more thread hop).
3. The numbers docs/scaling.md rests on: the front door's message rate (pings from
   pipelining DEALER sockets against one daemon loop), a 4096² RGBA upload into the
   daemon, a 4096² RGBA image through Ray's object store into an actor and back on one
   node, and how many small yields of one streaming generator reach the driver a second.

    .venv/bin/python bench/bench_cluster.py [--size 128] [--jobs 8] [--iterations 10]

Starts its own local Ray cluster (2 CPUs; every actor and the embedded worker get one
thread each, so the paths compare like for like) and its own daemons; touches nothing of
the user's. Needs the cluster extra.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_daemon import daemon_upload, images, median, warm_first_progress  # noqa: E402

from impasto.shared import protocol  # noqa: E402
from impasto.shared.rawimage import RawImage  # noqa: E402
from tests.daemon_fixture import daemon_env, spawn_daemon  # noqa: E402
from tests.ray_cluster import start_head  # noqa: E402

BASE = "embedded, 1 worker"
CONFIGS = [(BASE, 0), ("Ray, 1 actor", 1), ("Ray, 2 actors", 2), ("embedded again, 1 worker", 0)]


def wait_actors(daemon, count: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    client = daemon.client()
    while time.monotonic() < deadline:
        actors = client.status().get("cluster", {}).get("actors", [])
        if len(actors) == count and all(a["state"] == "ready" for a in actors):
            client.close()
            return
        time.sleep(0.5)
    raise RuntimeError(f"{count} actor(s) not ready in {timeout}s")


def throughput(daemon, size: int, jobs: int, iterations: int) -> float:
    """Seconds from submitting ``jobs`` jobs at once (one client each) to the last result."""
    content, style = images(size)
    options = {"size": size, "scales": 1, "iterations": iterations, "frames": 0}
    clients = [daemon.client(timeout=60) for _ in range(jobs)]
    for c in clients:
        c.connect()
    errors: list[BaseException] = []

    def run(client):
        try:
            client.wait(client.submit(content, [style], options), timeout=1800)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for c in clients:
        c.close()
    if errors:
        raise errors[0]
    return elapsed


def first_frame(daemon, size: int, repeat: int) -> float:
    client = daemon.client(timeout=60)
    warm_first_progress(client, size, 1)  # the first job also pays the style targets
    _, frame = warm_first_progress(client, size, repeat)
    client.close()
    return frame


def message_rate(endpoint: str, sockets: int = 4, per_socket: int = 5000) -> float:
    """Pings per second one daemon loop answers, ``sockets`` DEALERs pipelining."""
    ctx = zmq.Context()
    dealers = []
    for _ in range(sockets):
        d = ctx.socket(zmq.DEALER)
        d.setsockopt(zmq.SNDHWM, 0)
        d.setsockopt(zmq.RCVHWM, 0)
        d.connect(endpoint)
        dealers.append(d)
    ping = protocol.encode(protocol.PING, {"req": 1})
    start = time.perf_counter()
    for _ in range(per_socket):
        for d in dealers:
            d.send_multipart(ping)
    for d in dealers:
        for _ in range(per_socket):
            d.recv_multipart()
    elapsed = time.perf_counter() - start
    ctx.destroy(0)
    return sockets * per_socket / elapsed


def big_upload(daemon, repeat: int) -> float:
    """Median submit of a 4096² 8-bit RGBA content image until the daemon accepts it."""
    rng = np.random.default_rng(1)
    big = RawImage.from_numpy(rng.random((4096, 4096, 4), dtype=np.float32), 8)
    client = daemon.client(timeout=60)
    took = daemon_upload(client, big, repeat)
    client.close()
    return took


def ray_costs(head, repeat: int) -> tuple[float, float, float]:
    """A 4096² 8-bit RGBA image into an actor, and there and back (medians, seconds), and
    the rate at which one streaming generator's small yields reach the driver."""
    os.environ.update(head.env)  # before Ray is imported: it reads its token once
    import ray

    ray.init(address=head.address, log_to_driver=False, namespace="bench")

    @ray.remote(num_cpus=0)
    class Echo:
        def size(self, image):
            return len(image.data)

        def back(self, image):
            return image

        def stream(self, n):
            for i in range(n):
                yield i, {"iteration": i, "losses": {"total": 1.0}}

    echo = Echo.remote()
    rng = np.random.default_rng(1)
    big = RawImage.from_numpy(rng.random((4096, 4096, 4), dtype=np.float32), 8)
    ray.get(echo.size.remote(RawImage(16, 16, 3, 8, bytes(768))))  # the actor is up
    one_way, both = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        ray.get(echo.size.remote(big))
        one_way.append(time.perf_counter() - start)
        start = time.perf_counter()
        ray.get(echo.back.remote(big))
        both.append(time.perf_counter() - start)
    n = 2000
    start = time.perf_counter()
    for ref in echo.stream.options(num_returns="streaming").remote(n):
        ray.get(ref)
    rate = n / (time.perf_counter() - start)
    ray.shutdown()
    return median(one_way), median(both), rate


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="job long edge in px")
    ap.add_argument("--jobs", type=int, default=8, help="concurrent jobs")
    ap.add_argument("--iterations", type=int, default=10, help="iterations per job")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    head = start_head(num_cpus=2, object_store_mb=400)
    rows = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            # The embedded daemon runs first and again last: the machine's load drifts.
            for label, n in CONFIGS:
                name = label.split(",")[0].replace(" ", "-")
                if n:
                    env = {**daemon_env(root / name), **head.env}
                    args_ = ("--ray", head.address, "--ray-actors", str(n))
                else:  # one engine thread, as each actor has (Ray sets OMP_NUM_THREADS)
                    env = {**daemon_env(root / name), "OMP_NUM_THREADS": "1"}
                    args_ = ("--device", "cpu")
                daemon = spawn_daemon(root / name, *args_, env=env)
                try:
                    if n:
                        wait_actors(daemon, n)
                    else:
                        daemon.wait_until_ready(model=True)
                    frame = first_frame(daemon, args.size, args.repeat)
                    took = throughput(daemon, args.size, args.jobs, args.iterations)
                    rows[label] = (frame, took)
                    if label == BASE:
                        rate = message_rate(daemon.endpoint)
                        upload = big_upload(daemon, args.repeat)
                finally:
                    daemon.stop()
        store = ray_costs(head, args.repeat)
    finally:
        head.stop()

    base_frame, base_took = rows[BASE]
    print(
        f"\n### {args.jobs} concurrent {args.size} px jobs ({args.iterations} iterations each)"
        " and submit to first frame\n"
    )
    print("| backend | first frame (median) | vs embedded | all jobs done | jobs/min | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, (frame, took) in rows.items():
        print(
            f"| {label} | {frame * 1000:.0f} ms | {(frame - base_frame) * 1000:+.0f} ms | "
            f"{took:.1f} s | {args.jobs * 60 / took:.1f} | {base_took / took:.2f}x |"
        )
    print(f"\nfront door: {rate:,.0f} pings/s answered by one daemon loop (4 pipelining DEALERs)")
    print(f"upload of a 4096² 8-bit RGBA (64 MiB) into the daemon: {upload * 1000:.0f} ms")
    print(
        f"object store, 4096² 8-bit RGBA (64 MiB) into an actor: {store[0] * 1000:.0f} ms; "
        f"there and back: {store[1] * 1000:.0f} ms (median of {args.repeat}, one node)"
    )
    print(f"one streaming generator: {store[2]:,.0f} small yields/s reach the driver")


if __name__ == "__main__":
    main()
