"""The daemon as a process: one per endpoint, stale locks, signals, kill -9, CURVE."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from impasto.plugin.client import Client
from impasto.shared import errors, keys
from impasto.shared.errors import ImpastoError
from impasto.shared.rawimage import RawImage
from tests.daemon_fixture import daemon_env, first_progress, free_port, spawn_daemon

LONG_JOB = {"size": 64, "scales": 1, "iterations": 500, "frames": 0}


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(5)
    return RawImage.from_numpy(rng.random((48, 64, 3))), RawImage.from_numpy(
        rng.random((64, 64, 3))
    )


def test_a_second_daemon_on_the_same_endpoint_refuses_and_says_so(tmp_path):
    first = spawn_daemon(tmp_path, "--no-warmup")
    try:
        second = subprocess.run(
            [sys.executable, "-m", "impasto.daemon", "--endpoint", first.endpoint],
            env=first.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert "already serves" in second.stderr and f"pid {first.proc.pid}" in second.stderr
        assert first.client().status()["pid"] == first.proc.pid
    finally:
        assert first.stop() == 0


def test_kill_9_mid_job_is_reported_and_a_new_daemon_takes_over_the_lock(tmp_path, pictures):
    content, style = pictures
    old = spawn_daemon(tmp_path)
    client = old.client(timeout=10.0)  # generous while the daemon loads the model
    job = client.submit(content, [style], LONG_JOB)
    first_progress(client, job)
    client.timeout = 2.0
    old.kill()
    start = time.monotonic()
    with pytest.raises(ImpastoError) as info:
        client.wait(job, timeout=60)
    assert info.value.code == errors.DAEMON_UNAVAILABLE
    assert time.monotonic() - start < 2.0 + 1.5  # within the client's timeout
    assert old.endpoint in str(info.value) and job in str(info.value)

    new = spawn_daemon(tmp_path, "--no-warmup", endpoint=old.endpoint, env=old.env)
    try:
        assert f"took over the stale lock of pid {old.proc.pid}" in new.log_text
        client.timeout = 30.0
        info = client.status()  # the same Client reconnects by itself
        assert info["pid"] == new.proc.pid
        assert client.attach(job).state in ("queued", "running")  # journalled: resumed
        client.cancel(job)
        client.close()
    finally:
        assert new.stop() == 0


def test_a_restarted_daemon_is_followed_by_a_client_watching_a_job(tmp_path, pictures):
    content, style = pictures
    old = spawn_daemon(tmp_path)
    client = old.client(timeout=60.0)  # long timeout: the restart happens within it
    job = client.submit(content, [style], {**LONG_JOB, "iterations": 40})
    first_progress(client, job)
    old.kill()
    new = spawn_daemon(tmp_path, "--no-warmup", endpoint=old.endpoint, env=old.env)
    try:
        result = client.wait(job, timeout=180)
        assert result.iterations == 40 and not result.cancelled
        assert new.log_text.count(f"job {job}: queued") == 1  # resumed, not submitted again
    finally:
        client.close()
        new.stop()


def test_sigterm_stops_within_seconds_and_the_jobs_resume_at_the_next_start(tmp_path, pictures):
    content, style = pictures
    daemon = spawn_daemon(tmp_path)
    client = daemon.client(timeout=10)
    short = {**LONG_JOB, "iterations": 30}
    running = client.submit(content, [style], short)
    queued = client.submit(content, [style], short)
    first_progress(client, running)
    start = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - start < 8.0  # STOP_WAIT_S plus the loop's tick
    lock = next((daemon.state_dir / "impasto").glob("*.lock"))
    assert lock.read_text() == ""  # released: the next daemon starts without a stale lock
    assert "received SIGTERM" in daemon.log_text and "stopped" in daemon.log_text
    client.close()

    again = spawn_daemon(tmp_path, "--no-warmup", endpoint=daemon.endpoint, env=daemon.env)
    try:
        client = again.client(timeout=30)
        for job in (running, queued):
            assert client.wait(job, timeout=180).iterations == 30
        client.close()
    finally:
        again.stop()


def write_keys(daemon_config, client_dir, listed: bool, name: str = "laptop"):
    """Client key pair in client_dir; the daemon's server pair; optionally authorise."""
    server_dir = daemon_config / "impasto" / "keys"
    server_file = server_dir / "server.key"
    if not server_file.exists():
        keys.create_keypair("server", server_dir)
    server_public = keys.public_key(server_file)
    client_public = keys.create_keypair("client", client_dir)
    if listed:
        keys.authorize(client_public, name, daemon_config / "impasto" / "authorized_keys")
    client_public, client_secret = keys.secret_keypair(client_dir / "client.key_secret")
    return client_public, client_secret, server_public.encode()


def test_curve_lets_in_listed_keys_only(tmp_path, pictures):
    content, style = pictures
    env = daemon_env(tmp_path)
    listed = write_keys(tmp_path / "config", tmp_path / "listed", listed=True)
    unknown_public, unknown_secret = zmq.curve_keypair()
    unknown = (unknown_public, unknown_secret, listed[2])
    daemon = spawn_daemon(tmp_path, "--curve", "--no-warmup", env=env, wait=False)
    try:
        good = Client(daemon.endpoint, timeout=20, curve_keys=listed)
        info = good.status()  # also waits for the daemon to come up
        assert info["curve"] is True
        job = good.submit(content, [style], {**LONG_JOB, "iterations": 1})
        good.cancel(job)
        good.close()

        stranger = Client(daemon.endpoint, timeout=1.5, curve_keys=unknown)
        with pytest.raises(ImpastoError) as info:
            stranger.submit(content, [style], LONG_JOB)
        assert info.value.code == errors.DAEMON_UNAVAILABLE
        plain = Client(daemon.endpoint, timeout=1.5)
        with pytest.raises(ImpastoError):
            plain.status()
        assert "DENIED" in daemon.log_text or "denied" in daemon.log_text.lower()
    finally:
        daemon.stop()


def test_a_non_loopback_bind_turns_curve_on(tmp_path):
    endpoint = f"tcp://0.0.0.0:{free_port()}"
    daemon = spawn_daemon(tmp_path, "--no-warmup", endpoint=endpoint, wait=False)
    try:
        plain = Client(endpoint.replace("0.0.0.0", "127.0.0.1"), timeout=1.5)
        deadline = time.monotonic() + 30
        while "listening" not in daemon.log_text and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "CURVE on" in daemon.log_text
        with pytest.raises(ImpastoError) as info:
            plain.status()
        assert info.value.code == errors.DAEMON_UNAVAILABLE
    finally:
        daemon.stop()


def test_bad_flags_exit_with_a_message(tmp_path):
    env = daemon_env(tmp_path)
    for args, words in (
        (["--endpoint", "nonsense"], "must look like tcp://"),
        (["--max-pixels", "3"], "too small"),
        (["--curve", "--insecure"], "not allowed with"),
    ):
        run = subprocess.run(
            [sys.executable, "-m", "impasto.daemon", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode != 0 and words in run.stderr, (args, run.stderr)


def test_results_expire_after_the_retention_time(tmp_path):
    daemon = spawn_daemon(tmp_path, "--retention", "1")
    try:
        client = daemon.client(timeout=10)
        tiny = RawImage.from_numpy(np.full((32, 32, 3), 0.5, np.float32))
        job = client.submit(tiny, [tiny], {"size": 32, "scales": 1, "iterations": 1})
        client.wait(job, timeout=60)
        assert client.attach(job).state == "done"  # still there right after
        deadline = time.monotonic() + 10
        while any(j["job_id"] == job for j in client.jobs()) and time.monotonic() < deadline:
            time.sleep(0.2)
        with pytest.raises(ImpastoError) as info:
            client.attach(job)
        assert info.value.code == errors.UNKNOWN_JOB and "expired" in str(info.value)
        client.close()
    finally:
        daemon.stop()
