"""What the daemon costs and saves: prints Markdown tables for BENCHMARKS.md.

1. Time to the first progress event and to the first progress frame after a submit:
   a warm daemon versus a cold process that imports torch and loads VGG19 first (what
   a one-shot CLI run without a daemon pays).
2. The wire: a 4096x4096 RGBA frame there and back over tcp loopback with the real
   protocol code (zero-copy send versus copying send), and the upload of such an
   image into the real daemon (submit until accepted, validation included).
3. ``--limits``: what floods make the daemon hold (its RSS before and after each) and
   the cost of a submit with 1k and 20k jobs queued (issue 15).

    .venv/bin/python bench/bench_daemon.py [--size 128] [--repeat 5]
    .venv/bin/python bench/bench_daemon.py --limits [--queued 1000 20000]

Runs its own daemon with private XDG folders; touches nothing of the user's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from impasto.plugin.client import Client, Progress  # noqa: E402
from impasto.shared import protocol  # noqa: E402
from impasto.shared.errors import ImpastoError  # noqa: E402
from impasto.shared.rawimage import RawImage  # noqa: E402
from tests.daemon_fixture import daemon_env, local_dealer, spawn_daemon  # noqa: E402

COLD_SCRIPT = r"""
import sys, time
t0 = float(sys.argv[1])
import numpy as np
from impasto.daemon.engine import CancelToken, Engine
from impasto.shared.options import JobOptions
size = int(sys.argv[2])
rng = np.random.default_rng(0)
content = rng.random((size * 3 // 4, size, 3), dtype=np.float32)
style = rng.random((size, size, 3), dtype=np.float32)
opts = JobOptions(size=size, scales=1, iterations=4, frames=4)
engine = Engine()
for run in range(1 + int(sys.argv[3])):  # run 0: cold process; then model loaded
    seen = {}
    def on_progress(p):
        now = time.time()
        seen.setdefault("progress", now - t0)
        if p.image is not None:
            seen.setdefault("frame", now - t0)
            token.cancel()
    token = CancelToken()
    engine.run(content, [style], opts, on_progress=on_progress, cancel=token)
    print(seen["progress"], seen.get("frame", float("nan")))
    t0 = time.time()
"""


def median(values):
    return statistics.median(values)


def images(size: int):
    rng = np.random.default_rng(0)
    content = RawImage.from_numpy(rng.random((size * 3 // 4, size, 3)))
    style = RawImage.from_numpy(rng.random((size, size, 3)))
    return content, style


def warm_first_progress(client: Client, size: int, repeat: int):
    content, style = images(size)
    opts = {"size": size, "scales": 1, "iterations": 4, "frames": 4}
    firsts, frames = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        job = client.submit(content, [style], opts)
        first = frame = None
        while frame is None:
            for event in client.poll(1.0):
                if isinstance(event, Progress) and event.job_id == job:
                    now = time.perf_counter() - start
                    first = first if first is not None else now
                    if event.frame is not None:
                        frame = now
        client.cancel(job)
        client.wait(job, timeout=120)
        firsts.append(first)
        frames.append(frame)
    return median(firsts), median(frames)


def in_process_first_progress(env: dict, size: int, repeat: int):
    """Medians (first progress, first frame) of two cold processes and of ``repeat``
    further runs in each of them with the model loaded."""
    cold, warm = [], []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", COLD_SCRIPT, repr(time.time()), str(size), str(repeat)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        rows = [list(map(float, line.split())) for line in out.stdout.strip().splitlines()]
        cold.append(rows[0])
        warm.extend(rows[1:])
    cold_first, cold_frame = zip(*cold, strict=True)
    warm_first, warm_frame = zip(*warm, strict=True)
    return (median(cold_first), median(cold_frame)), (median(warm_first), median(warm_frame))


def wire_round_trip(image: RawImage, copy: bool, repeat: int) -> float:
    """Client -> server -> client with encode/decode at each end, over tcp loopback."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    result = {"job_id": "bench", "iterations": 1, "losses": {}, "cancelled": False, "elapsed": 0}

    def echo():
        for _ in range(repeat + 1):
            identity, *frames = router.recv_multipart(copy=False)
            msg = protocol.decode(frames, (protocol.RESULT,), None)
            back = protocol.encode(protocol.RESULT, msg.fields, msg.images)
            router.send_multipart([identity, *back], copy=copy)

    server = threading.Thread(target=echo)
    server.start()
    times = []
    for i in range(repeat + 1):  # the first one warms the connection up
        start = time.perf_counter()
        dealer.send_multipart(protocol.encode(protocol.RESULT, result, [image]), copy=copy)
        frames = dealer.recv_multipart(copy=False)
        back = protocol.decode(frames, (protocol.RESULT,), None)
        assert back.images[0].width == image.width
        if i:
            times.append(time.perf_counter() - start)
    server.join()
    ctx.destroy(0)
    return median(times)


def daemon_upload(client: Client, image: RawImage, repeat: int) -> float:
    """submit() of a big content image until the daemon's accepted reply."""
    style = RawImage.from_numpy(np.full((64, 64, 3), 0.5, np.float32))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        job = client.submit(image, [style], {"size": 64, "scales": 1, "iterations": 1})
        times.append(time.perf_counter() - start)
        client.cancel(job)
        with contextlib.suppress(ImpastoError):  # cancelled before it ran
            client.wait(job, timeout=300)
    return median(times)


def rss(client: Client) -> float:
    return client.status()["memory"]["rss_mb"]


def limits_bench(queued: list[int]) -> None:
    """RSS before/after each flood, and submit latency with many jobs queued."""
    rng = np.random.default_rng(2)
    with tempfile.TemporaryDirectory() as tmp:
        daemon = spawn_daemon(
            Path(tmp),
            "--max-queued-jobs",
            str(max(queued) + 100),
            "--max-queued-jobs-total",
            str(max(queued) + 100),
            "--max-queued-mb",
            "2048",
        )
        rows = []
        try:
            daemon.wait_until_ready(model=True)
            client = daemon.client(timeout=120)
            tiny = RawImage.from_numpy(np.full((32, 32, 3), 0.5, np.float32))
            blocker = client.submit(tiny, [tiny], {"size": 32, "scales": 1, "iterations": 100_000})

            # 1. the biggest legal submit: 8 styles + content at 4096^2, 16-bit RGBA
            big = RawImage.from_numpy(rng.random((4096, 4096, 4), dtype=np.float32), 16)
            before = rss(client)
            start = time.perf_counter()
            job = client.submit(big, [big] * 8, {"size": 64})
            took = time.perf_counter() - start
            rows.append(
                (
                    "submit of content + 8 styles, 4096^2 16-bit RGBA (1152 MiB), "
                    f"uploaded in {took:.1f} s",
                    before,
                    rss(client),
                )
            )
            client.cancel(job)
            del big

            # 2. 20 stalled uploads (announced, never sent) + 20 connections sending
            # 50 MiB frames (over the message limit)
            before = rss(client)
            stalled = []
            for i in range(20):
                sock = local_dealer(daemon.endpoint)
                fields = {
                    "req": 1,
                    "options": {"size": 64},
                    "n_styles": 1,
                    "img": [[4096, 4096, 4, 16]] * 2,
                }
                sock.send_multipart(protocol.encode(protocol.SUBMIT, fields))
                flood = local_dealer(daemon.endpoint)
                flood.send_multipart(
                    [protocol.encode(protocol.STATUS, {"req": i})[0], bytes(50 << 20)]
                )
                stalled += [sock, flood]
            time.sleep(5.0)
            uploads = client.status()["uploads"]
            what = (
                f"20 submits announcing 256 MiB, never sending ({uploads} admitted as uploads, "
                "the rest refused by the upload cap) + 20 senders of 50 MiB frames"
            )
            rows.append((what, before, rss(client)))
            for sock in stalled:
                sock.close(0)
            while client.status()["uploads"]:  # idle uploads are dropped after 30 s
                time.sleep(1.0)

            # 3. submit latency with N jobs queued
            latencies = []
            count = 0
            before = rss(client)
            for target in sorted(queued):
                while count < target:
                    client.submit(tiny, [tiny], {"size": 32, "iterations": 1})
                    count += 1
                    if count % 1000 == 0:
                        client.poll(0)  # drop the Accepted events
                times = []
                for _ in range(50):
                    start = time.perf_counter()
                    client.submit(tiny, [tiny], {"size": 32, "iterations": 1})
                    times.append(time.perf_counter() - start)
                    count += 1
                client.poll(0)
                latencies.append((target, median(times), rss(client)))
            rows.append((f"{count} tiny jobs queued", before, rss(client)))
            client.cancel(blocker)
            client.close()
        finally:
            daemon.stop(timeout=60)

    print("\n### What floods make the daemon hold (RSS of the daemon, MB)\n")
    print("| flood | RSS before | RSS after | growth |")
    print("|---|---:|---:|---:|")
    for what, a, b in rows:
        print(f"| {what} | {a:.0f} | {b:.0f} | {b - a:+.0f} |")
    print("\n### Submit with many jobs queued (median of 50 submits, tiny 32 px jobs)\n")
    print("| jobs queued | submit until accepted | daemon RSS |")
    print("|---:|---:|---:|")
    for n, t, r in latencies:
        print(f"| {n} | {t * 1000:.1f} ms | {r:.0f} MB |")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="job long edge in px")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--limits", action="store_true", help="the floods and queue costs only")
    ap.add_argument("--queued", type=int, nargs="+", default=[1000, 20000])
    args = ap.parse_args()
    if args.limits:
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
        limits_bench(args.queued)
        return

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        daemon = spawn_daemon(Path(tmp))
        try:
            daemon.wait_until_ready(model=True)
            client = daemon.client(timeout=30)
            warm = warm_first_progress(client, args.size, args.repeat)
            cold, engine = in_process_first_progress(daemon_env(Path(tmp)), args.size, args.repeat)
            print(f"\n### Submit to first progress ({args.size} px, median of runs)\n")
            print("| path | first progress event | first progress frame |")
            print("|---|---:|---:|")
            print(f"| warm daemon | {warm[0] * 1000:.0f} ms | {warm[1] * 1000:.0f} ms |")
            print(
                f"| cold process (import torch, load VGG19) | {cold[0] * 1000:.0f} ms | "
                f"{cold[1] * 1000:.0f} ms |"
            )
            print(
                f"| engine in-process, model loaded (no daemon) | {engine[0] * 1000:.0f} ms | "
                f"{engine[1] * 1000:.0f} ms |"
            )
            print(
                f"| ratio cold / warm daemon | {cold[0] / warm[0]:.1f}x | "
                f"{cold[1] / warm[1]:.1f}x |"
            )
            print(
                f"| ratio warm daemon / in-process engine | {warm[0] / engine[0]:.2f}x | "
                f"{warm[1] / engine[1]:.2f}x |"
            )

            rng = np.random.default_rng(1)
            big8 = RawImage.from_numpy(rng.random((4096, 4096, 4), dtype=np.float32), 8)
            big16 = big8.to_depth(16)
            rows = []
            for img in (big8, big16):
                zero = wire_round_trip(img, copy=False, repeat=args.repeat)
                copying = wire_round_trip(img, copy=True, repeat=args.repeat)
                rows.append((img, zero, copying))
            upload = daemon_upload(client, big8, max(2, args.repeat // 2))
            client.close()
        finally:
            daemon.stop()

    print("\n### A 4096x4096 RGBA frame on the wire (tcp loopback, median)\n")
    print("| frame | MiB | round trip, zero-copy send | round trip, copying send | ratio |")
    print("|---|---:|---:|---:|---:|")
    for img, zero, copying in rows:
        mib = len(img.data) / 2**20
        print(
            f"| {img.depth}-bit RGBA | {mib:.0f} | {zero * 1000:.0f} ms | "
            f"{copying * 1000:.0f} ms | {copying / zero:.2f}x |"
        )
    print(
        f"\nupload of the 8-bit frame into the real daemon (submit -> accepted): "
        f"{upload * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
