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
    """A submit announcing its two images; their pixels follow later in chunks."""
    fields = {
        "req": 1,
        "options": JobOptions(size=64).to_dict(),
        "n_styles": 1,
        "img": [[4, 3, 3, 8], [2, 2, 4, 16]],
    }
    fields.update(overrides)
    return protocol.encode(protocol.SUBMIT, fields)


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


def test_submit_announces_its_images_and_chunks_carry_their_bytes():
    frames = protocol.encode(
        protocol.SUBMIT,
        {
            "req": 5,
            "options": {"size": 64},
            "n_styles": 1,
            "frame_size": 32,
            "frame_depth": 16,
            "img": [[4, 3, 3, 8], [2, 2, 4, 16]],
        },
    )
    assert len(frames) == 1  # no pixels in a submit
    msg = protocol.decode(frames)
    assert msg.type == protocol.SUBMIT and msg.req == 5 and msg.images == []
    assert msg["img"] == [(4, 3, 3, 8), (2, 2, 4, 16)]
    assert [protocol.image_bytes(d) for d in msg["img"]] == [36, 32]
    data = bytes(range(36))
    piece = {"req": 5, "upload_id": "0001-ab", "image": 0, "offset": 0}
    chunk = protocol.decode(protocol.encode(protocol.CHUNK, piece, data=data))
    assert chunk["offset"] == 0 and bytes(chunk["data"]) == data


def test_pixels_inside_a_submit_are_refused_with_the_way_to_send_them():
    frames = [*submit_frames(), image().data, image(2, 2, 4, 16).data]
    assert "chunk" in str(refused(frames))


def test_a_chunk_over_the_chunk_size_is_refused():
    piece = {"req": 1, "upload_id": "u", "image": 0, "offset": 0}
    big = b"\0" * (protocol.CHUNK_BYTES + 1)
    assert "chunk limit" in str(refused(protocol.encode(protocol.CHUNK, piece, data=big)))


def test_every_reply_type_round_trips():
    samples = {
        protocol.WELCOME: {
            "req": 1,
            "daemon": "0.1",
            "instance": "x",
            "pid": 3,
            "endpoint": "e",
            "identity": "local",
            "max_message": protocol.MAX_MESSAGE,
        },
        protocol.UPLOAD: {"req": 1, "upload_id": "u", "chunk": 4096, "credit": 8},
        protocol.CREDIT_MSG: {"req": 1, "upload_id": "u", "credit": 1},
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


@pytest.mark.parametrize("version", [True, float(protocol.VERSION), str(protocol.VERSION)])
def test_the_version_must_be_an_integer(version):
    frames = with_header(protocol.encode(protocol.HELLO, {"req": 4}), v=version)
    refused(frames, errors.VERSION_MISMATCH)


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [b""],
        [b"\xc1garbage"],
        [msgpack.packb([1, 2, 3])],
        [msgpack.packb({"v": protocol.VERSION})],
        [msgpack.packb({"v": protocol.VERSION, "t": "launch_missiles", "req": 1})],
        [msgpack.packb({"v": protocol.VERSION, "t": 7, "req": 1})],
        [b"x" * (protocol.MAX_HEADER_BYTES + 1)],
        [msgpack.packb({"v": protocol.VERSION, "t": "status", "req": 1})]
        + [b""] * protocol.MAX_FRAMES,
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


def result_frames():
    fields = {"job_id": "j", "iterations": 3, "losses": {}, "cancelled": False, "elapsed": 1.0}
    return protocol.encode(protocol.RESULT, fields, [image()])


def test_truncated_multipart_is_refused():
    frames = result_frames()
    assert "truncated" in str(refused(frames[:-1], expect=protocol.REPLIES))
    piece = {"req": 1, "upload_id": "u", "image": 0, "offset": 0}
    assert "data frame" in str(refused(protocol.encode(protocol.CHUNK, piece)))


@pytest.mark.parametrize(("depth", "channels"), [(8, 3), (16, 4)])
def test_floats_become_rounded_clamped_samples_across_bands(depth, channels):
    # from_numpy quantises 256 rows at a time; 600 rows cross two band edges.
    import numpy as np

    rng = np.random.default_rng(depth)
    a = rng.uniform(-0.2, 1.2, (600, 5, channels)).astype(np.float32)
    a[0, 0, 0], a[255, 1, 0], a[256, 2, 0], a[599, 4, 0] = np.nan, np.inf, -np.inf, 0.5
    top = 65535 if depth == 16 else 255
    want = (np.clip(np.nan_to_num(a), 0, 1) * top + 0.5).astype("<u2" if depth == 16 else "u1")
    img = RawImage.from_numpy(a, depth)
    assert (img.width, img.height, img.channels, img.depth) == (5, 600, channels, depth)
    got = np.frombuffer(img.data, want.dtype).reshape(want.shape)
    assert np.array_equal(got, want)
    assert got[0, 0, 0] == 0 and got[255, 1, 0] == top and got[256, 2, 0] == 0
    assert np.isnan(a[0, 0, 0])  # the caller's array is untouched


def test_image_bytes_must_match_the_header():
    frames = result_frames()
    exc = refused([frames[0], frames[1][:-1]], errors.BAD_IMAGE, expect=protocol.REPLIES)
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
        protocol.encode(protocol.HELLO, {"req": 1, "client": "k"}),
        protocol.encode(
            protocol.CHUNK, {"req": 1, "upload_id": "u", "image": 0, "offset": 0}, data=b"x"
        ),
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
            frames[0] = bytes(msgpack.packb(h) or b"")
        try:
            protocol.decode(frames)
            outcomes["ok"] += 1
        except protocol.ProtocolError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 1000 and outcomes["ok"] > 10, outcomes


# -- estimate: a job's plan before it is submitted ---------------------------------------
def estimate_frames(**overrides):
    fields = {"req": 7, "options": {"size": 64}, "width": 640, "height": 480, "n_styles": 2}
    fields.update(overrides)
    return protocol.encode(protocol.ESTIMATE, fields)


def test_an_estimate_and_its_reply_round_trip():
    msg = protocol.decode(estimate_frames())
    assert msg.type == protocol.ESTIMATE and msg.req == 7
    assert (msg["width"], msg["height"], msg["n_styles"]) == (640, 480, 2)
    assert msg["options"] == {"size": 64}
    assert protocol.decode(estimate_frames(n_styles=None))["n_styles"] is None  # default 1
    info = {"width": 64, "height": 48, "scales": [{"width": 64, "tile": None}], "seconds": 2.5}
    reply = protocol.encode(protocol.ESTIMATE_REPLY, {"req": 7, "info": info})
    assert protocol.decode(reply, protocol.REPLIES)["info"] == info


@pytest.mark.parametrize(
    "change",
    [{"width": 0}, {"height": "480"}, {"options": [1]}, {"n_styles": 99}, {"width": None}],
)
def test_a_malformed_estimate_is_a_bad_message(change):
    refused(estimate_frames(**change))


def test_an_estimate_over_the_pixel_limit_is_refused_as_a_submit_would_be():
    error = refused(
        estimate_frames(width=4000, height=3000), errors.IMAGE_TOO_LARGE, max_pixels=10**6
    )
    assert "4000x3000" in str(error) and error.req == 7
    protocol.decode(estimate_frames(width=1000, height=1000), max_pixels=10**6)


# -- sequences ------------------------------------------------------------------------
def sequence_submit(n_frames=3, frame=(4, 3, 3, 8), **overrides):
    """A sequence submit: ``n_frames`` content frames, then one style."""
    fields = {
        "req": 1,
        "options": JobOptions(size=64).to_dict(),
        "n_styles": 1,
        "n_frames": n_frames,
        "sequence": {"temporal_weight": 2.0},
        "img": [list(frame)] * n_frames + [[2, 2, 4, 16]],
    }
    fields.update(overrides)
    return protocol.encode(protocol.SUBMIT, fields)


def test_a_sequence_submit_announces_its_frames_then_its_styles():
    msg = protocol.decode(sequence_submit())
    assert msg["n_frames"] == 3 and msg["sequence"] == {"temporal_weight": 2.0}
    assert msg["img"] == [(4, 3, 3, 8)] * 3 + [(2, 2, 4, 16)]
    # frames of one size may differ in channels and depth (the daemon converts)
    mixed = sequence_submit(2, img=[[4, 3, 3, 8], [4, 3, 4, 16], [2, 2, 4, 16]])
    assert protocol.decode(mixed)["img"][1] == (4, 3, 4, 16)
    # the last image of the longest sequence can be uploaded
    last = protocol.MAX_SEQUENCE_FRAMES + protocol.MAX_STYLES - 1
    piece = {"req": 1, "upload_id": "u", "image": last, "offset": 0}
    assert protocol.decode(protocol.encode(protocol.CHUNK, piece, data=b"x"))["image"] == last


def test_the_longest_sequence_fits_in_a_header():
    frames = sequence_submit(
        protocol.MAX_SEQUENCE_FRAMES, (4096, 4096, 4, 16), n_styles=protocol.MAX_STYLES
    )
    frames = with_header(frames, img=[[4096, 4096, 4, 16]] * protocol.MAX_ANNOUNCED)
    msg = protocol.decode(frames, max_pixels=None)
    assert len(msg["img"]) == protocol.MAX_ANNOUNCED


def test_a_sequence_with_an_init_image_is_refused():
    frames = with_header(sequence_submit(2), has_init=True, img=[[4, 3, 3, 8]] * 4)
    assert "has_init" in str(refused(frames))


def test_sequence_frames_of_different_sizes_are_refused_naming_them():
    frames = with_header(
        sequence_submit(3), img=[[4, 3, 3, 8], [4, 3, 3, 8], [5, 3, 3, 8], [2, 2, 4, 16]]
    )
    exc = refused(frames, errors.BAD_IMAGE)
    assert "frame 2 is 5x3, frame 0 is 4x3" in str(exc)


@pytest.mark.parametrize("n_frames", [1, protocol.MAX_SEQUENCE_FRAMES + 1, True, "4"])
def test_a_frame_count_out_of_range_is_refused(n_frames):
    frames = with_header(sequence_submit(2), n_frames=n_frames)
    assert "n_frames" in str(refused(frames))


def test_sequence_options_need_a_sequence_and_a_map():
    assert "n_frames" in str(refused(with_header(submit_frames(), sequence={})))
    assert "sequence" in str(refused(with_header(sequence_submit(2), sequence=[1])))
    # the announced count follows n_frames
    exc = refused(with_header(sequence_submit(3), img=[[4, 3, 3, 8]] * 3))
    assert "needs 4 image(s)" in str(exc)


def test_frame_events_and_sequence_fields_round_trip():
    fields = {
        "job_id": "j",
        "index": 2,
        "n_frames": 4,
        "iterations": 30,
        "losses": {"style": 1.5, "temporal": 0.25},
        "elapsed": 2.5,
        "warm": True,
    }
    msg = protocol.decode(protocol.encode(protocol.FRAME, fields, [image()]), protocol.REPLIES)
    assert msg.type == protocol.FRAME and msg.fields == fields
    assert msg.images[0].header() == image().header()
    assert "needs 1 image" in str(
        refused(protocol.encode(protocol.FRAME, fields), expect=protocol.REPLIES)
    )
    progress = {
        "job_id": "j",
        "iteration": 1,
        "total": 9,
        "scale": 1,
        "n_scales": 1,
        "losses": {},
        "elapsed": 0.5,
        "frame": 3,
        "n_frames": 4,
    }
    msg = protocol.decode(protocol.encode(protocol.PROGRESS, progress), protocol.REPLIES)
    assert (msg["frame"], msg["n_frames"]) == (3, 4)
    result = {"job_id": "j", "iterations": 3, "losses": {}, "cancelled": True, "elapsed": 1.0}
    msg = protocol.decode(
        protocol.encode(protocol.RESULT, {**result, "frames": 2}, [image()]), protocol.REPLIES
    )
    assert msg["frames"] == 2
    # a still job's result has no frame count
    msg = protocol.decode(protocol.encode(protocol.RESULT, result, [image()]), protocol.REPLIES)
    assert msg["frames"] is None
