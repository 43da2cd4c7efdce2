"""A daemon safe to share, tested on real daemons: each test here failed on the daemon
before issue 15 (paths from clients, unbounded uploads, no ownership, fragile keys,
a stop that trusted stale pids, a queue lost to kill -9)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest
import zmq

from impasto.daemon.worker import CHECKPOINT_FRAMES, CHECKPOINT_S
from impasto.plugin import daemonctl
from impasto.plugin.client import Client
from impasto.shared import errors, keys, paths, protocol
from impasto.shared.errors import ImpastoError
from impasto.shared.rawimage import RawImage
from tests.daemon_fixture import daemon_env, first_progress, free_port, local_dealer, spawn_daemon

LONG = {"size": 64, "scales": 1, "iterations": 500, "frames": 0}
SHORT = {"size": 32, "scales": 1, "iterations": 3, "frames": 0}


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(15)
    return RawImage.from_numpy(rng.random((32, 32, 3)).astype(np.float32))


def refusal(client: Client, tiny: RawImage, options: dict) -> ImpastoError:
    with pytest.raises(ImpastoError) as info:
        client.submit(tiny, [tiny], options)
    return info.value


# -- 1. no client-sent paths -----
def test_weights_are_names_and_every_probe_gets_one_identical_error(tmp_path, tiny):
    env = daemon_env(tmp_path)
    env.pop("IMPASTO_OFFLINE", None)  # the daemon itself must refuse to download
    offered = tmp_path / "weights"
    offered.mkdir()
    os.mkfifo(offered / "pipe.pth")  # a FIFO blocked the only worker before
    (offered / "folder.pth").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "fifo")
    daemon = spawn_daemon(tmp_path, "--no-warmup", "--weights-dir", str(offered), env=env)
    try:
        client = daemon.client(timeout=10)
        probes = [
            "/proc/self/environ",
            "/etc/passwd",
            "/nonexistent/file.pth",
            str(outside),
            str(outside / "fifo"),
            "~",
            "~/.bashrc",
            "../weights/pipe",
            "pipe",  # in the folder, but a FIFO
            "folder",  # in the folder, but a directory
            "nothing-here",
        ]
        messages = set()
        for value in probes:
            start = time.monotonic()
            exc = refusal(client, tiny, {**SHORT, "weights": value})
            assert time.monotonic() - start < 5.0  # answered at once, never blocked
            assert exc.code == errors.BAD_OPTIONS
            messages.add(str(exc))
        assert len(messages) == 1, messages
        (message,) = messages
        assert "original, torchvision" in message and "pipe" not in message
        # torchvision weights that are not cached: the job fails, nothing downloads
        job = client.submit(tiny, [tiny], {**SHORT, "extractor": "vgg16", "weights": "torchvision"})
        with pytest.raises(ImpastoError) as info:
            client.wait(job, timeout=120)
        assert info.value.code == errors.WEIGHTS_MISSING
        assert "never downloads" in str(info.value)
        assert not any((tmp_path / "torch-home").rglob("*.pth"))
        assert client.status()["pid"] == daemon.proc.pid  # and it still serves
        client.close()
    finally:
        daemon.stop()


# -- 2. ownership and fairness by proven identity -----
@pytest.fixture(scope="module")
def curve_daemon(tmp_path_factory):
    """A CURVE daemon on loopback with two authorised identities, alice and bob."""
    root = tmp_path_factory.mktemp("curve")
    env = daemon_env(root)
    config = root / "config" / "impasto"
    server_public = keys.public_key(keys.create_keypair("server", config / "keys"))
    identities = {}
    for name in ("alice", "bob"):
        public_file = keys.create_keypair("client", root / name)
        keys.authorize(public_file, name, config / "authorized_keys")
        public, secret = keys.secret_keypair(root / name / "client.key_secret")
        identities[name] = (public, secret, server_public.encode())
    daemon = spawn_daemon(root, "--curve", env=env, wait=False)
    daemon.identities = identities  # pyright: ignore[reportAttributeAccessIssue]
    client = Client(daemon.endpoint, timeout=60, curve_keys=identities["alice"])
    client.status()  # waits for the daemon to answer
    client.close()
    yield daemon
    daemon.stop()


def as_(daemon, name: str, timeout: float = 30) -> Client:
    return Client(daemon.endpoint, timeout=timeout, curve_keys=daemon.identities[name])


def test_a_second_identity_cannot_list_attach_or_cancel_the_first_ones_jobs(curve_daemon, tiny):
    alice, bob = as_(curve_daemon, "alice"), as_(curve_daemon, "bob")
    try:
        assert alice.connect()["identity"] != bob.connect()["identity"]
        job = alice.submit(tiny, [tiny], LONG)
        assert job in [j["job_id"] for j in alice.jobs()]
        assert job not in [j["job_id"] for j in bob.jobs()]
        answers = []
        for attempt in (bob.attach, bob.cancel):
            with pytest.raises(ImpastoError) as info:
                attempt(job)
            assert info.value.code == errors.UNKNOWN_JOB
            answers.append(str(info.value).replace(job, "ID"))
        with pytest.raises(ImpastoError) as never:
            bob.attach("0999-deadbeef")
        assert set(answers) == {str(never.value).replace("0999-deadbeef", "ID")}
        assert alice.attach(job).state in ("queued", "running")  # untouched
        alice.cancel(job)
    finally:
        alice.close()
        bob.close()


def test_fairness_is_keyed_on_the_identity_not_on_what_a_client_says(curve_daemon, tiny):
    """alice queues three jobs, then bob one: bob's runs second. Clients that cannot
    prove an identity cannot queue at all, so they cannot push bob back."""
    alice, bob = as_(curve_daemon, "alice"), as_(curve_daemon, "bob")
    strangers = []
    jobs: list[str] = []
    try:
        blocker = alice.submit(tiny, [tiny], LONG)
        first_progress(alice, blocker)
        jobs = [alice.submit(tiny, [tiny], LONG) for _ in range(2)]
        for _ in range(5):  # unauthorised keys, each claiming to be a new client
            public, secret = zmq.curve_keypair()
            stranger = Client(
                curve_daemon.endpoint,
                timeout=1.0,
                name="bob",
                curve_keys=(public, secret, curve_daemon.identities["bob"][2]),
            )
            with pytest.raises(ImpastoError):
                stranger.submit(tiny, [tiny], LONG)
            strangers.append(stranger)
        bob_job = bob.submit(tiny, [tiny], LONG)
        positions = {j["job_id"]: j["position"] for j in alice.jobs() if j["state"] == "queued"}
        assert positions == {jobs[0]: 0, jobs[1]: 2}
        assert bob.attach(bob_job).position == 1
        bob.cancel(bob_job)
    finally:
        for job in [*jobs, blocker]:
            alice.cancel(job)
        alice.close()
        bob.close()
        for s in strangers:
            s.close()


def test_a_malformed_key_file_leaves_authorised_clients_working(curve_daemon):
    broken = curve_daemon.config_dir / "impasto" / "authorized_keys" / "broken.key"
    broken.write_text("this is not a certificate\n")
    try:
        for name in ("alice", "bob"):  # new connections: the folder is read again
            client = as_(curve_daemon, name, timeout=10)
            assert client.status()["curve"] is True
            client.close()
        assert "skipped authorised key file" in curve_daemon.log_text
    finally:
        broken.unlink()


def test_sigterm_is_prompt_with_a_malformed_key_file(tmp_path):
    env = daemon_env(tmp_path)
    allowed = tmp_path / "config" / "impasto" / "authorized_keys"
    allowed.mkdir(parents=True)
    (allowed / "junk.key").write_text("garbage")
    public_file = keys.create_keypair("client", tmp_path / "me")
    keys.authorize(public_file, "me", allowed)
    daemon = spawn_daemon(tmp_path, "--curve", "--no-warmup", env=env, wait=False)
    public, secret = keys.secret_keypair(tmp_path / "me" / "client.key_secret")
    server_file = tmp_path / "config" / "impasto" / "keys" / "server.key"
    deadline = time.monotonic() + 60
    while not server_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    client = Client(
        daemon.endpoint, timeout=30, curve_keys=(public, secret, keys.public_key(server_file))
    )
    assert client.status()["curve"] is True
    client.close()
    start = time.monotonic()
    assert daemon.stop(timeout=20) == 0
    assert time.monotonic() - start < 8.0


def test_a_client_without_the_local_token_gets_nothing(daemon, tiny, tmp_path, monkeypatch):
    """Another account on the machine cannot read the token: it gets no answer at all."""
    fake = tmp_path / "runtime"
    fake.mkdir(mode=0o700)
    (fake / "token").write_text("f" * 64)
    monkeypatch.setenv("IMPASTO_RUNTIME_DIR", str(fake))
    other = Client(daemon.endpoint, timeout=1.5)
    for attempt in (other.status, other.jobs, lambda: other.submit(tiny, [tiny], SHORT)):
        with pytest.raises(ImpastoError) as info:
            attempt()
        assert info.value.code == errors.DAEMON_UNAVAILABLE
    assert "without the right token" in daemon.log_text


# -- 4. bounded resources -----
def rss_mb(client: Client) -> float:
    return client.status()["memory"]["rss_mb"]


def test_big_submits_and_stalled_uploads_stay_under_the_caps(tmp_path, tiny):
    daemon = spawn_daemon(tmp_path, "--max-queued-mb", "512")
    try:
        daemon.wait_until_ready(model=True)  # torch and the model in memory first
        client = daemon.client(timeout=20)
        before = rss_mb(client)
        # the most styles (8) at 4096x4096, 16-bit RGBA: 1152 MiB, over the 512 MiB cap
        big = [[4096, 4096, 4, 16]] * 9
        raw = local_dealer(daemon.endpoint)
        submit = {"req": 1, "options": {"size": 64}, "n_styles": 8, "img": big}
        raw.send_multipart(protocol.encode(protocol.SUBMIT, submit))
        assert raw.poll(10_000)
        reply = protocol.decode(raw.recv_multipart(), protocol.REPLIES, None)
        assert (
            reply["code"] == errors.QUEUE_FULL and "512 queued MiB per client" in reply["message"]
        )
        # four uploads of 128 MiB each announced and never sent, then a fifth
        one = {"req": 2, "options": {"size": 64}, "n_styles": 1, "img": big[:2]}
        for req in range(2, 6):
            raw.send_multipart(protocol.encode(protocol.SUBMIT, {**one, "req": req}))
        kinds = [protocol.decode(raw.recv_multipart(), protocol.REPLIES, None) for _ in range(4)]
        assert [k.type for k in kinds[:2]] == [protocol.UPLOAD] * 2
        assert kinds[2].type == protocol.ERROR and kinds[2]["code"] == errors.QUEUE_FULL
        # 20 connections announcing 134 MB frames: dropped by libzmq before buffering
        flood = []
        for _ in range(20):
            s = local_dealer(daemon.endpoint)
            s.send_multipart(
                [protocol.encode(protocol.STATUS, {"req": 1})[0], bytes(50 << 20)], zmq.NOBLOCK
            )
            flood.append(s)
        time.sleep(2.0)
        assert rss_mb(client) - before < 100  # neither the uploads nor the flood are held
        assert client.status()["uploads"] == 2
        for s in [raw, *flood]:
            s.close(0)
        client.close()
    finally:
        daemon.stop()


# -- 5. stop -----
def test_daemon_stop_leaves_an_unrelated_pid_alone(tmp_path):
    """A stale lock (the daemon was kill -9'd) naming a pid now used by another program."""
    endpoint = "tcp://127.0.0.1:9"  # nothing serves here
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = paths.lock_file(endpoint)
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text(f"{bystander.pid}\n{endpoint}\n")
        assert daemonctl.stop(endpoint, timeout=5) is False
        time.sleep(0.3)
        assert bystander.poll() is None  # still alive
    finally:
        bystander.kill()
        bystander.wait()


# -- 3. crash-safe queue -----
def test_kill_9_mid_queue_then_restart_delivers_every_accepted_result(tmp_path, tiny):
    old = spawn_daemon(tmp_path)
    client = old.client(timeout=30)
    # Long enough that no CPU finishes it before the kill (a quiet 2-core machine ran 24
    # iterations of it in under the 4 s wait), short enough to finish after the restart.
    total = 300
    running = client.submit(tiny, [tiny], {**LONG, "iterations": total})
    queued = [client.submit(tiny, [tiny], {**SHORT, "seed": i}) for i in range(3)]
    first_progress(client, running)
    # A checkpoint is the first of the worker's internal frames (one every
    # total / CHECKPOINT_FRAMES iterations) at least CHECKPOINT_S after the start: wait for
    # the time, then for one more such frame (a loaded CI machine got to the kill in
    # between when the test waited only for the time).
    start, iteration, after = time.monotonic(), 0, None
    while after is None or iteration <= after + total // CHECKPOINT_FRAMES:
        for e in client.poll(0.2):
            iteration = max(iteration, getattr(e, "iteration", 0))
        if after is None and time.monotonic() - start > CHECKPOINT_S + 1:
            after = iteration
    assert iteration < total
    old.kill()
    client.close()
    new = spawn_daemon(tmp_path, "--no-warmup", endpoint=old.endpoint, env=old.env)
    try:
        fresh = new.client(timeout=30)
        results = {job: fresh.wait(job, timeout=300) for job in [running, *queued]}
        assert all(not r.cancelled for r in results.values())
        assert results[running].iterations == total
        assert all(r.image.width == 32 for job, r in results.items() if job != running)
        assert "resuming from its checkpoint" in new.log_text
        fresh.close()
    finally:
        new.stop()


# -- 6. logs -----
def test_a_flood_of_refusals_is_logged_at_a_bounded_rate(daemon):
    raw = local_dealer(daemon.endpoint)
    before = daemon.log_text.count("refused")
    for i in range(500):
        raw.send_multipart([bytes(msgpack.packb({"v": True, "t": "hello", "req": i}) or b"")])
    for _ in range(500):
        assert raw.poll(10_000)
        reply = protocol.decode(raw.recv_multipart(), protocol.REPLIES, None)
        assert reply["code"] == errors.VERSION_MISMATCH  # `true` is not version 1
    raw.close(0)
    assert daemon.log_text.count("refused") - before <= 2 * 20 + 2


def test_daemon_start_on_a_non_loopback_address_reports_readiness(tmp_path):
    """A CURVE-only daemon this machine has no key for is still seen to be serving (its
    lock says ready); `daemon stop` then signals it, the lock being held and ours."""
    endpoint = f"tcp://0.0.0.0:{free_port()}"
    env = daemon_env(tmp_path)
    cli = [sys.executable, "-m", "impasto.cli.main", "daemon"]
    start = time.monotonic()
    run = subprocess.run(
        [*cli, "start", "--endpoint", endpoint],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "started" in run.stdout and time.monotonic() - start < 40
    stop = subprocess.run(
        [*cli, "stop", "--endpoint", endpoint], env=env, capture_output=True, text=True, timeout=60
    )
    assert stop.returncode == 0 and "stopped" in stop.stdout, stop.stderr
