"""The wire protocol on its own: encoding, decoding and the refusal of bad messages."""

from __future__ import annotations

import random

import msgpack
import pytest

from impasto.shared import errors, protocol
from impasto.shared.options import JobOptions
from impasto.shared.rawimage import RawImage


def image(w=4, h=3, c=3, depth=8, fill=7) -> RawImage:
    return RawImage(w, h, c, depth, bytes([fill]) * (w * h * c * depth // 8))


def submit_frames(**overrides):
    fields = {"req": 1, "options": JobOptions(size=64).to_dict(), "n_styles": 1}
    fields.update(overrides)
    return protocol.encode(protocol.SUBMIT, fields, [image(), image(2, 2, 4, 16)])


def header(frames) -> dict:
    return msgpack.unpackb(frames[0])


def with_header(frames, **changes):
    h = header(frames)
    h.update(changes)
    return [msgpack.packb(h), *frames[1:]]


def refused(frames, code=errors.BAD_MESSAGE, **kw) -> protocol.ProtocolError:
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode(frames, **kw)
    assert info.value.code == code, info.value
    return info.value


def test_submit_round_trip_keeps_pixels_in_their_own_frames():
    content, style = image(fill=1), image(2, 2, 4, 16, fill=200)
    frames = protocol.encode(
        protocol.SUBMIT,
        {"req": 5, "options": {"size": 64}, "n_styles": 1, "frame_size": 32, "frame_depth": 16},
        [content, style],
    )
    assert len(frames) == 3 and frames[1] is content.data and frames[2] is style.data
    msg = protocol.decode(frames)
    assert msg.type == protocol.SUBMIT and msg.req == 5
    assert msg["frame_size"] == 32 and msg["frame_depth"] == 16 and msg["has_init"] is None
    assert [m.header() for m in msg.images] == [content.header(), style.header()]
    assert bytes(msg.images[1].data) == style.data


def test_every_reply_type_round_trips():
    samples = {
        protocol.WELCOME: {"req": 1, "daemon": "0.1", "instance": "x", "pid": 3, "endpoint": "e"},
        protocol.ACCEPTED: {"req": 1, "job_id": "j", "position": 2, "state": "queued"},
        protocol.PROGRESS: {
            "job_id": "j",
            "iteration": 1,
            "total": 9,
            "scale": 1,
            "n_scales": 2,
            "losses": {"style": 1.5},
            "elapsed": 0.5,
            "eta": 4.0,
        },
        protocol.FAILED: {"job_id": "j", "code": "bad_image", "message": "m"},
        protocol.ERROR: {"req": 1, "code": "unknown_job", "message": "m"},
        protocol.STATUS_REPLY: {"req": 1, "info": {"queued": 0}},
        protocol.JOBS_REPLY: {"req": 1, "jobs": [{"job_id": "j"}]},
        protocol.OK: {"req": 1},
        protocol.PONG: {"req": 1, "instance": "x"},
    }
    for kind, fields in samples.items():
        msg = protocol.decode(protocol.encode(kind, fields), protocol.REPLIES)
        assert msg.type == kind
        assert {k: v for k, v in msg.fields.items() if v is not None} == fields
    result = {"job_id": "j", "iterations": 3, "losses": {}, "cancelled": False, "elapsed": 1.0}
    msg = protocol.decode(protocol.encode(protocol.RESULT, result, [image()]), protocol.REPLIES)
    assert msg.images[0].header() == image().header()


def test_a_request_type_is_refused_where_a_reply_is_expected():
    refused(protocol.encode(protocol.STATUS, {"req": 1}), expect=protocol.REPLIES)


def test_version_mismatch_names_both_versions():
    frames = with_header(protocol.encode(protocol.HELLO, {"req": 4}), v=protocol.VERSION + 1)
    exc = refused(frames, errors.VERSION_MISMATCH)
    assert f"daemon is protocol version {protocol.VERSION}" in str(exc)
    assert f"client is protocol version {protocol.VERSION + 1}" in str(exc)
    assert exc.req == 4


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [b""],
        [b"\xc1garbage"],
        [msgpack.packb([1, 2, 3])],
        [msgpack.packb({"v": 1})],
        [msgpack.packb({"v": 1, "t": "launch_missiles", "req": 1})],
        [msgpack.packb({"v": 1, "t": 7, "req": 1})],
        [b"x" * (protocol.MAX_HEADER_BYTES + 1)],
        [msgpack.packb({"v": 1, "t": "status", "req": 1})] + [b""] * protocol.MAX_FRAMES,
    ],
    ids=[
        "empty",
        "empty-header",
        "garbage",
        "list",
        "no-type",
        "unknown",
        "int-type",
        "huge",
        "too-many-frames",
    ],
)
def test_malformed_messages_are_bad_messages(frames):
    refused(frames)


@pytest.mark.parametrize(
    "change",
    [
        {"req": "1"},
        {"req": -1},
        {"req": True},
        {"options": [1, 2]},
        {"n_styles": 0},
        {"n_styles": 99},
        {"n_styles": 1.0},
        {"has_init": 1},
        {"frame_size": 4},
        {"frame_depth": 12},
        {"surprise": 1},
        {"img": "nope"},
        {"img": [[4, 3, 3]] * 2},
    ],
)
def test_wrong_field_types_and_values_are_named(change):
    exc = refused(with_header(submit_frames(), **change))
    named = next(iter(change))
    assert named in str(exc) or "image" in str(exc)
    assert exc.req in (1, None)


def test_missing_required_field_is_named():
    frames = protocol.encode(protocol.CANCEL, {"req": 1})
    assert "job_id" in str(refused(frames))


def test_truncated_multipart_is_refused():
    frames = submit_frames()
    assert "truncated" in str(refused(frames[:-1]))


def test_image_bytes_must_match_the_header():
    frames = submit_frames()
    exc = refused([frames[0], frames[1][:-1], frames[2]], errors.BAD_IMAGE)
    assert "35 bytes" in str(exc)


@pytest.mark.parametrize("desc", [[0, 3, 3, 8], [4, 3, 2, 8], [4, 3, 3, 12], [4, "3", 3, 8]])
def test_impossible_image_headers_are_bad_images(desc):
    frames = with_header(submit_frames(), img=[desc, [2, 2, 4, 16]])
    refused(frames, errors.BAD_IMAGE)


def test_a_huge_image_header_is_refused_before_its_bytes_are_looked_at():
    frames = with_header(submit_frames(), img=[[100_000, 100_000, 4, 16], [2, 2, 4, 16]])
    exc = refused(frames, errors.IMAGE_TOO_LARGE)
    assert "100000x100000" in str(exc)
    # and the configurable limit is the one applied
    refused(submit_frames(), errors.IMAGE_TOO_LARGE, max_pixels=10)


def test_error_fields_carry_code_and_message():
    fields = protocol.error_fields(protocol.ProtocolError("boom", errors.BAD_IMAGE), 3, "j")
    assert fields == {"req": 3, "code": "bad_image", "message": "boom", "job_id": "j"}


def test_fuzzed_messages_only_ever_raise_protocol_errors():
    """Mutated real messages and random bytes: decode either succeeds or says why."""
    rng = random.Random(20261128)
    seeds = [
        submit_frames(),
        protocol.encode(protocol.ATTACH, {"req": 2, "job_id": "0001-abcd"}),
        protocol.encode(protocol.HELLO, {"req": 1, "client": "k", "client_id": "c"}),
    ]
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(2000):
        frames = [bytes(f) for f in rng.choice(seeds)]
        action = rng.randrange(4)
        if action == 0:  # flip bytes in the header
            h = bytearray(frames[0])
            for _ in range(rng.randint(1, 4)):
                h[rng.randrange(len(h))] = rng.randrange(256)
            frames[0] = bytes(h)
        elif action == 1:  # drop or add frames
            if rng.random() < 0.5 and len(frames) > 1:
                del frames[rng.randrange(1, len(frames))]
            else:
                frames.append(rng.randbytes(rng.randrange(64)))
        elif action == 2:  # random bytes
            frames = [rng.randbytes(rng.randrange(1, 200)) for _ in range(rng.randint(1, 4))]
        else:  # random values in a valid header
            h = header(frames)
            key = rng.choice([*h.keys(), "img", "zz"])
            h[key] = rng.choice([None, -1, 2**63, "x", [], {}, [[1]], 1.5, True, b"\x00"])
            frames[0] = msgpack.packb(h)
        try:
            protocol.decode(frames)
            outcomes["ok"] += 1
        except protocol.ProtocolError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 1000 and outcomes["ok"] > 10, outcomes
