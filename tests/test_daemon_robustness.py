"""Hostile and broken input on real sockets: the daemon answers with the right error
code (or drops what cannot be answered) and keeps serving."""

from __future__ import annotations

import random
import socket
import time

import msgpack
import pytest

from impasto.shared import errors, protocol
from impasto.shared.options import JobOptions
from tests.daemon_fixture import local_dealer, spawn_daemon


class Raw:
    """A bare DEALER socket with the local token: sends whatever frames a test builds."""

    def __init__(self, endpoint: str):
        self.sock = local_dealer(endpoint)

    def send(self, frames) -> None:
        self.sock.send_multipart(frames)

    def recv(self, timeout: float = 10.0) -> protocol.Message:
        assert self.sock.poll(int(timeout * 1000)), "no reply"
        return protocol.decode(self.sock.recv_multipart(), protocol.REPLIES, None)

    def ask(self, frames) -> protocol.Message:
        self.send(frames)
        return self.recv()

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture
def raw(daemon):
    r = Raw(daemon.endpoint)
    yield r
    r.close()


def still_serving(daemon) -> None:
    client = daemon.client(timeout=10)
    try:
        assert client.status()["pid"] == daemon.proc.pid
    finally:
        client.close()
    assert daemon.proc.poll() is None


def image_frames(w=8, h=8):
    """A submit announcing two images (their pixels would follow in chunks)."""
    return protocol.encode(
        protocol.SUBMIT,
        {
            "req": 9,
            "options": JobOptions(size=64).to_dict(),
            "n_styles": 1,
            "img": [[w, h, 3, 8], [w, h, 3, 8]],
        },
    )


def error_of(reply: protocol.Message, code: str) -> str:
    assert reply.type == protocol.ERROR, reply
    assert reply["code"] == code, reply.fields
    return reply["message"]


def test_garbage_bytes_get_a_bad_message_error(daemon, raw):
    error_of(raw.ask([b"\xc1\xff garbage"]), errors.BAD_MESSAGE)
    error_of(raw.ask([b""]), errors.BAD_MESSAGE)
    error_of(raw.ask([msgpack.packb(["not", "a", "map"])]), errors.BAD_MESSAGE)
    still_serving(daemon)


def test_raw_tcp_garbage_is_dropped(daemon):
    host, port = daemon.endpoint.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(random.Random(3).randbytes(4096))
        s.settimeout(1)
        try:
            while s.recv(4096):
                pass
        except (ConnectionResetError, TimeoutError):
            pass
    still_serving(daemon)


def test_a_chunk_without_its_data_frame_is_named(daemon, raw):
    piece = {"req": 3, "upload_id": "0001-x", "image": 0, "offset": 0}
    message = error_of(raw.ask(protocol.encode(protocol.CHUNK, piece)), errors.BAD_MESSAGE)
    assert "data frame" in message
    still_serving(daemon)


def test_wrong_types_are_named(daemon, raw):
    reply = raw.ask([msgpack.packb({"v": protocol.VERSION, "t": "cancel", "req": 3, "job_id": 42})])
    assert "job_id" in error_of(reply, errors.BAD_MESSAGE) and reply.req == 3
    frames = image_frames()
    h = msgpack.unpackb(frames[0])
    h["options"]["size"] = "big"
    reply = raw.ask([msgpack.packb(h), *frames[1:]])
    assert "size" in error_of(reply, errors.BAD_OPTIONS)
    still_serving(daemon)


def test_an_unknown_message_type_is_refused(daemon, raw):
    reply = raw.ask([msgpack.packb({"v": protocol.VERSION, "t": "format_disk", "req": 4})])
    assert "format_disk" in error_of(reply, errors.BAD_MESSAGE)


def test_a_huge_image_header_is_refused_without_its_bytes(daemon, raw):
    frames = image_frames()
    h = msgpack.unpackb(frames[0])
    h["img"][0] = [100_000, 100_000, 4, 8]
    message = error_of(raw.ask([msgpack.packb(h), *frames[1:]]), errors.IMAGE_TOO_LARGE)
    assert "100000x100000" in message
    still_serving(daemon)


def test_a_version_mismatch_names_both_versions(daemon, raw):
    reply = raw.ask([msgpack.packb({"v": 99, "t": "hello", "req": 1})])
    message = error_of(reply, errors.VERSION_MISMATCH)
    assert f"daemon is protocol version {protocol.VERSION}" in message
    assert "client is protocol version 99" in message
    still_serving(daemon)


def test_a_raw_status_request_is_answered(daemon, raw):
    """A status request through a raw socket gets the same answer a Client does."""
    reply = raw.ask(protocol.encode(protocol.STATUS, {"req": 77}))
    assert reply.type == protocol.STATUS_REPLY and reply.req == 77


def test_fuzz_hundreds_of_random_messages_each_get_one_answer(daemon, raw):
    rng = random.Random(1128)
    types = [t for t in protocol.REQUESTS if t not in (protocol.SUBMIT, protocol.SHUTDOWN)]
    values = [None, -1, 0, 2**63, "x", "", [], {}, [[1, 2]], 1.5, True, b"\x00", {"a": 1}]
    sent = 0
    for _ in range(300):
        kind = rng.randrange(4)
        if kind == 0:
            frames = [rng.randbytes(rng.randrange(1, 300)) for _ in range(rng.randint(1, 3))]
        elif kind == 1:
            h = {"v": protocol.VERSION, "t": rng.choice(types), "req": rng.randrange(100)}
            for _ in range(rng.randint(0, 3)):
                h[rng.choice(["job_id", "client", "img", "zz", "req", "t", "v"])] = rng.choice(
                    values
                )
            frames = [msgpack.packb(h)] + [rng.randbytes(8)] * rng.randint(0, 2)
        elif kind == 2:
            h = msgpack.unpackb(image_frames()[0])
            h[rng.choice(["n_styles", "options", "img", "has_init", "frame_depth"])] = rng.choice(
                values
            )
            frames = [msgpack.packb(h)]
        else:
            valid = bytearray(protocol.encode(protocol.ATTACH, {"req": 1, "job_id": "x"})[0])
            valid[rng.randrange(len(valid))] = rng.randrange(256)
            frames = [bytes(valid)]
        raw.send(frames)
        sent += 1
    answers = 0
    deadline = time.monotonic() + 30
    while answers < sent and time.monotonic() < deadline:
        if raw.sock.poll(1000):
            raw.sock.recv_multipart()
            answers += 1
    assert answers == sent
    still_serving(daemon)
    client = daemon.client()
    assert not any(j["state"] == "queued" for j in client.jobs())
    client.close()


def test_oversized_frames_and_images_over_the_pixel_limit(tmp_path):
    """A small --max-pixels daemon: an over-limit header gets image_too_large, a frame
    beyond MAXMSGSIZE is dropped by libzmq before it is buffered; both leave it serving."""
    small = spawn_daemon(tmp_path, "--max-pixels", "4096", "--no-warmup")
    try:
        raw = Raw(small.endpoint)
        message = error_of(raw.ask(image_frames(128, 128)), errors.IMAGE_TOO_LARGE)
        assert "16,384 pixels" in message and "4,096" in message
        raw.send([protocol.encode(protocol.STATUS, {"req": 1})[0], bytes(4 * 2**20)])
        assert not raw.sock.poll(1000)  # dropped: no answer to an unreadable message
        raw.close()
        client = small.client()
        assert client.status()["max_pixels"] == 4096
        client.close()
    finally:
        assert small.stop() == 0
