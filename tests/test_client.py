"""The client library on its own terms: timeouts, non-blocking poll, early errors,
version checks, and starting/stopping a daemon through daemonctl."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import msgpack
import pytest
import zmq
from zmq.auth.thread import ThreadAuthenticator

from impasto.plugin import daemonctl
from impasto.plugin.client import Client
from impasto.shared import errors, keys, paths, protocol
from impasto.shared.errors import ImpastoError
from impasto.shared.rawimage import RawImage
from impasto.shared.sequence import MAX_SEQUENCE_FRAMES
from tests.daemon_fixture import free_port

PIXELS = RawImage(2, 2, 3, 8, bytes(12))


def test_no_daemon_is_a_clear_error_within_the_timeout():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    client = Client(endpoint, timeout=1.0)
    start = time.monotonic()
    with pytest.raises(ImpastoError) as info:
        client.status()
    assert time.monotonic() - start < 2.0
    assert info.value.code == errors.DAEMON_UNAVAILABLE and endpoint in str(info.value)
    assert not client.connected


def test_poll_never_blocks_longer_than_asked(client):
    for wait in (0.0, 0.2):
        start = time.monotonic()
        assert client.poll(wait) == []
        assert time.monotonic() - start < wait + 0.15


def test_bad_options_fail_before_anything_is_sent():
    client = Client(f"tcp://127.0.0.1:{free_port()}", timeout=0.5)  # nothing listens
    with pytest.raises(ImpastoError) as info:
        client.submit(PIXELS, [PIXELS], {"iterations": -3})
    assert info.value.code == errors.BAD_OPTIONS and "iterations" in str(info.value)
    with pytest.raises(ImpastoError) as info:
        client.submit(PIXELS, [PIXELS], {"colour": "red"})
    assert "colour" in str(info.value)
    with pytest.raises(ImpastoError) as info:
        client.submit(PIXELS, [], {})
    assert info.value.code == errors.BAD_IMAGE


def test_bad_endpoints_are_refused():
    for endpoint in ("localhost:5755", "udp://127.0.0.1:1", "tcp://127.0.0.1:99999"):
        with pytest.raises(ValueError):
            Client(endpoint)


def test_a_daemon_of_another_protocol_version_gets_a_clear_error():
    """An older or newer daemon (here: a peer speaking version+1) is named as such."""
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)  # the client speaks PLAIN with its local token
    auth.start()
    auth.configure_plain(
        domain="*", passwords={keys.LOCAL_USER: keys.local_token(create=True) or ""}
    )
    router = ctx.socket(zmq.ROUTER)
    router.plain_server = True
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def other_daemon():
        if router.poll(5000):
            identity, request = router.recv_multipart()
            req = msgpack.unpackb(request)["req"]
            reply = {"v": protocol.VERSION + 1, "t": "welcome", "req": req}
            router.send_multipart([identity, bytes(msgpack.packb(reply) or b"")])

    thread = threading.Thread(target=other_daemon)
    thread.start()
    client = Client(f"tcp://127.0.0.1:{port}", timeout=5)
    with pytest.raises(ImpastoError) as info:
        client.connect()
    thread.join()
    router.close(0)
    auth.stop()
    ctx.term()
    assert info.value.code == errors.VERSION_MISMATCH
    assert f"daemon is protocol version {protocol.VERSION + 1}" in str(info.value)
    assert f"client is protocol version {protocol.VERSION}" in str(info.value)


def test_connect_returns_the_welcome_and_ping_measures_a_round_trip(client, daemon):
    info = client.connect()
    assert info["pid"] == daemon.proc.pid and info["endpoint"] == daemon.endpoint
    assert 0 < client.ping() < 1.0


def test_daemonctl_starts_reports_and_stops_a_detached_daemon():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    assert daemonctl.status(endpoint, timeout=0.5) is None
    assert daemonctl.stop(endpoint) is False
    info = daemonctl.start(endpoint, args=["--no-warmup"])
    try:
        assert info["endpoint"] == endpoint
        assert daemonctl.daemon_pid(endpoint) == info["pid"]
        assert paths.log_file(endpoint).exists()  # in this test's XDG_STATE_HOME
        again = daemonctl.start(endpoint)  # already running: no second process
        assert again["pid"] == info["pid"]
    finally:
        assert daemonctl.stop(endpoint) is True
    assert daemonctl.status(endpoint, timeout=0.5) is None
    assert daemonctl.daemon_pid(endpoint) is None


def test_autostart_starts_a_daemon_when_none_answers():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    client = Client(endpoint, timeout=1.0, autostart=True)
    try:
        info = client.connect()
        assert info["pid"] == daemonctl.daemon_pid(endpoint)
    finally:
        client.shutdown()
    deadline = time.monotonic() + 20
    while daemonctl.daemon_pid(endpoint) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert daemonctl.daemon_pid(endpoint) is None


def test_daemonctl_start_reports_the_daemons_own_refusal():
    """A port taken by another program: start fails with the daemon's message."""
    ctx = zmq.Context.instance()
    squatter = ctx.socket(zmq.REP)
    port = squatter.bind_to_random_port("tcp://127.0.0.1")
    try:
        with pytest.raises(ImpastoError) as info:
            daemonctl.start(f"tcp://127.0.0.1:{port}", args=["--no-warmup"], timeout=30)
        assert info.value.code == errors.DAEMON_UNAVAILABLE
        assert "did not start" in str(info.value) and "cannot listen" in str(info.value)
    finally:
        squatter.close(0)


def test_poll_without_a_connection_fails_at_once():
    client = Client(f"tcp://127.0.0.1:{free_port()}", timeout=5.0)
    start = time.monotonic()
    with pytest.raises(ImpastoError) as info:
        client.poll(0.0)
    assert info.value.code == errors.DAEMON_UNAVAILABLE
    assert time.monotonic() - start < 0.5


def test_the_client_side_imports_neither_torch_nor_numpy():
    code = (
        "import sys; import impasto.plugin.client, impasto.plugin.daemonctl, "
        "impasto.shared.protocol, impasto.shared.keys, impasto.shared.paths; "
        "print(sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_sequences_fail_before_anything_is_sent():
    client = Client(f"tcp://127.0.0.1:{free_port()}", timeout=0.5)  # nothing listens
    for frames in ([PIXELS], [PIXELS] * (MAX_SEQUENCE_FRAMES + 1)):
        with pytest.raises(ImpastoError) as info:
            client.submit_sequence(frames, [PIXELS])
        assert info.value.code == errors.BAD_IMAGE and "frames" in str(info.value)
    with pytest.raises(ImpastoError) as info:
        client.submit_sequence([PIXELS] * 2, [PIXELS], sequence={"temporal_wieght": 1})
    assert info.value.code == errors.BAD_OPTIONS and "temporal_wieght" in str(info.value)
    with pytest.raises(ImpastoError) as info:
        client.submit_sequence([PIXELS] * 2, [PIXELS], sequence={"flow": "magic"})
    assert "flow" in str(info.value)
    assert not client.connected


def test_alpha_comes_off_losslessly():
    rgb = RawImage(3, 2, 3, 16, bytes(range(36)))
    assert rgb.with_alpha().without_alpha() == rgb
    assert rgb.without_alpha() is rgb
