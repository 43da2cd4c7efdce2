"""Image files in every awkward form: each decodes correctly or fails with a clear error."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from impasto.shared.errors import BAD_IMAGE, BAD_OPTIONS, IMAGE_TOO_LARGE, ImpastoError
from impasto.shared.imagefile import encode_image, load_image, save_image
from impasto.shared.rawimage import RawImage


def encoded(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_real_jpeg_from_path(starry_night):
    raw = load_image(starry_night)
    assert (raw.width, raw.height, raw.channels, raw.depth) == (1024, 640, 3, 8)
    ref = np.asarray(Image.open(starry_night).convert("RGB"))
    np.testing.assert_array_equal(np.frombuffer(raw.data, np.uint8).reshape(ref.shape), ref)


def test_grayscale_becomes_rgb():
    gray = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    raw = load_image(encoded(gray))
    arr = raw.to_numpy()
    assert raw.channels == 3 and arr.shape == (8, 8, 3)
    np.testing.assert_array_equal(arr[..., 0], arr[..., 2])
    assert arr[0, 5, 1] == pytest.approx(5 / 255)


def test_sixteen_bit_grayscale_keeps_sixteen_bits():
    values = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    raw = load_image(encoded(Image.fromarray(values)))
    assert raw.depth == 16 and raw.channels == 3
    arr = np.frombuffer(raw.data, "<u2").reshape(2, 2, 3)
    np.testing.assert_array_equal(arr[..., 1], values)


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (6, 4), (0, 255, 255, 0))  # pure red ink mix
    raw = load_image(encoded(cmyk, "JPEG"))
    assert raw.channels == 3
    r, g, b = raw.to_numpy()[2, 3]
    assert r > 0.8 and g < 0.2 and b < 0.2


def test_palette_with_transparency_and_rgba_keep_alpha():
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.info["transparency"] = 0
    raw = load_image(encoded(pal, transparency=0))
    assert raw.channels == 4
    arr = raw.to_numpy()
    assert arr[0, 0, 3] == 0.0 and arr[1, 1, 3] == 1.0 and arr[1, 1, 0] == 1.0
    rgba = Image.new("RGBA", (3, 2), (10, 20, 30, 128))
    assert load_image(encoded(rgba)).to_numpy()[0, 0, 3] == pytest.approx(128 / 255)
    opaque_pal = Image.new("P", (2, 2), 0)
    assert load_image(encoded(opaque_pal)).channels == 3


def test_corrupt_truncated_empty_and_missing_files(tmp_path, tubingen):
    data = tubingen.read_bytes()
    with pytest.raises(ImpastoError) as err:
        load_image(data[: len(data) // 3])
    assert err.value.code == BAD_IMAGE and "truncated" in str(err.value)
    with pytest.raises(ImpastoError) as err:
        load_image(b"GIF89a but not really")
    assert err.value.code == BAD_IMAGE
    with pytest.raises(ImpastoError) as err:
        load_image(b"\x00" * 100)
    assert err.value.code == BAD_IMAGE and "not an image" in str(err.value)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImpastoError) as err:
        load_image(empty)
    assert (
        err.value.code == BAD_IMAGE and "empty" in str(err.value) and "empty.png" in str(err.value)
    )
    with pytest.raises(ImpastoError) as err:
        load_image(tmp_path / "missing.jpg")
    assert err.value.code == BAD_IMAGE and "does not exist" in str(err.value)
    with pytest.raises(ImpastoError) as err:
        load_image(tmp_path)
    assert err.value.code == BAD_IMAGE


def test_pixel_limit_checked_from_the_header_before_decoding():
    big = encoded(Image.new("L", (3000, 2000)))
    with pytest.raises(ImpastoError) as err:
        load_image(big, max_pixels=1_000_000)
    assert err.value.code == IMAGE_TOO_LARGE and "3000x2000" in str(err.value)
    # a header that claims a huge size with almost no data: rejected without decoding
    bomb = bytearray(encoded(Image.new("L", (4, 4))))
    ihdr = bomb.index(b"IHDR") + 4
    bomb[ihdr : ihdr + 8] = (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big")
    bomb[ihdr + 13 : ihdr + 17] = zlib.crc32(bytes(bomb[ihdr - 4 : ihdr + 13])).to_bytes(4, "big")
    with pytest.raises(ImpastoError) as err:
        load_image(bytes(bomb))
    assert err.value.code == IMAGE_TOO_LARGE


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (4, 2), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    raw = load_image(encoded(img, "JPEG", exif=exif.tobytes()))
    assert (raw.width, raw.height) == (2, 4)


def test_save_and_encode_round_trip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    raw = RawImage.from_numpy(arr)
    path = save_image(raw, tmp_path / "out.png")
    back = load_image(path)
    assert back.channels == 4 and back.data == raw.data
    jpg = load_image(encode_image(raw, "jpg"))
    assert jpg.channels == 3 and (jpg.width, jpg.height) == (7, 5)
    sixteen = raw.to_depth(16)
    assert load_image(encode_image(sixteen)).data == raw.data
    with pytest.raises(ImpastoError) as err:
        save_image(raw, tmp_path / "out.xyz")
    assert err.value.code == BAD_OPTIONS and "out.xyz" in str(err.value)
    with pytest.raises(ImpastoError) as err:
        save_image(raw, tmp_path / "no-such-dir" / "x.png")
    assert err.value.code == BAD_OPTIONS and "cannot write" in str(err.value)


def test_imagefile_does_not_import_torch():
    import subprocess
    import sys

    code = "import impasto.shared.imagefile, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
