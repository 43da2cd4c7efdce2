"""Uncompressed pixels as they cross every boundary: editor, wire, engine.

A ``RawImage`` is row-major RGB or RGBA, 8 or 16 bits per channel (16-bit samples are
little-endian on the wire). Editors hand us bytes, the protocol sends them as their own
ZeroMQ frame, and the engine turns them into arrays: so this module needs nothing but
the standard library. NumPy and Pillow conversions are imported only when called.
"""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED_CHANNELS = (3, 4)
SUPPORTED_DEPTHS = (8, 16)


class ImageError(ValueError):
    """Pixels that cannot be used: wrong size, format or length."""


@dataclass(frozen=True)
class RawImage:
    width: int
    height: int
    channels: int  # 3 = RGB, 4 = RGBA
    depth: int  # bits per channel: 8 or 16
    data: bytes

    def __post_init__(self) -> None:
        check_header(self.width, self.height, self.channels, self.depth)
        if len(self.data) != self.expected_nbytes():
            raise ImageError(
                f"image data is {len(self.data)} bytes, but {self.width}x{self.height} "
                f"with {self.channels} channels at {self.depth} bit needs "
                f"{self.expected_nbytes()}"
            )

    @property
    def bytes_per_sample(self) -> int:
        return self.depth // 8

    @property
    def has_alpha(self) -> bool:
        return self.channels == 4

    def expected_nbytes(self) -> int:
        return self.width * self.height * self.channels * self.bytes_per_sample

    def header(self) -> dict:
        """The fields the wire protocol sends beside the pixel frame."""
        return {
            "width": self.width,
            "height": self.height,
            "channels": self.channels,
            "depth": self.depth,
        }

    # -- byte-level conversions (no numpy: these run inside Krita and GIMP) ----------
    @classmethod
    def from_bgra(cls, width: int, height: int, depth: int, data: bytes) -> RawImage:
        """Krita's 8- and 16-bit RGBA layers store pixels as BGRA in native order."""
        return cls(width, height, 4, depth, swap_red_blue(data, 4, depth))

    def to_bgra(self) -> bytes:
        rgba = self if self.channels == 4 else self.with_alpha()
        return swap_red_blue(rgba.data, 4, self.depth)

    def with_alpha(self) -> RawImage:
        """RGBA copy, opaque where the source had no alpha."""
        if self.channels == 4:
            return self
        n = self.bytes_per_sample
        out = bytearray(self.width * self.height * 4 * n)
        stride_in, stride_out = 3 * n, 4 * n
        for c in range(3 * n):  # copy each byte lane of RGB into the RGBA layout
            out[c::stride_out] = self.data[c::stride_in]
        out[3 * n :: stride_out] = b"\xff" * (self.width * self.height)
        if n == 2:
            out[3 * n + 1 :: stride_out] = b"\xff" * (self.width * self.height)
        return RawImage(self.width, self.height, 4, self.depth, bytes(out))

    def without_alpha(self) -> RawImage:
        """RGB copy: the alpha channel dropped."""
        if self.channels == 3:
            return self
        n = self.bytes_per_sample
        out = bytearray(self.width * self.height * 3 * n)
        for c in range(3 * n):  # each byte lane of RGB out of the RGBA layout
            out[c :: 3 * n] = self.data[c :: 4 * n]
        return RawImage(self.width, self.height, 3, self.depth, bytes(out))

    # -- optional conversions -------------------------------------------------------------
    def to_numpy(self):
        """float32 array (H, W, C) in 0..1."""
        import numpy as np

        dtype = np.dtype("<u2") if self.depth == 16 else np.uint8
        arr = np.frombuffer(self.data, dtype=dtype).reshape(self.height, self.width, self.channels)
        out = arr.astype(np.float32)
        out /= 65535.0 if self.depth == 16 else 255.0
        return out

    @classmethod
    def from_numpy(cls, array, depth: int = 8) -> RawImage:
        """From a float array in 0..1 (H, W, 3|4) or an integer array of that depth."""
        import numpy as np

        arr = np.asarray(array)
        if arr.ndim != 3 or arr.shape[2] not in SUPPORTED_CHANNELS:
            raise ImageError(f"expected an (H, W, 3|4) array, got shape {arr.shape}")
        dtype = np.dtype("<u2") if depth == 16 else np.uint8
        if arr.dtype.kind == "f":
            arr = _quantise(arr, dtype, 65535 if depth == 16 else 255)
        arr = np.ascontiguousarray(arr.astype(dtype, copy=False))
        return cls(arr.shape[1], arr.shape[0], arr.shape[2], depth, arr.tobytes())

    def to_pil(self):
        """A Pillow image (8-bit RGB or RGBA; 16-bit data is reduced to 8 bit)."""
        from PIL import Image

        img = self if self.depth == 8 else self.to_depth(8)
        mode = "RGBA" if self.channels == 4 else "RGB"
        return Image.frombytes(mode, (self.width, self.height), img.data)

    def to_depth(self, depth: int) -> RawImage:
        """Rescale samples to 8 or 16 bit; 8 -> 16 -> 8 is lossless."""
        if depth == self.depth:
            return self
        if depth not in SUPPORTED_DEPTHS:
            raise ImageError(f"unsupported bit depth {depth}")
        if depth == 16:  # v * 257 maps 0..255 onto 0..65535 exactly
            out = bytearray(len(self.data) * 2)
            out[0::2] = self.data
            out[1::2] = self.data
            return RawImage(self.width, self.height, self.channels, 16, bytes(out))
        out8 = self.data[1::2]  # the high byte of each little-endian sample
        return RawImage(self.width, self.height, self.channels, 8, out8)


def check_header(width, height, channels, depth, max_pixels: int | None = None) -> None:
    """Validate image dimensions before any buffer is allocated for them."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ImageError(f"image {name} must be an integer, got {value!r}")
        if value <= 0:
            raise ImageError(f"image {name} is {value}: the image is empty")
    if channels not in SUPPORTED_CHANNELS:
        raise ImageError(f"image has {channels!r} channels; only RGB (3) and RGBA (4) travel")
    if depth not in SUPPORTED_DEPTHS:
        raise ImageError(f"image bit depth {depth!r} is not supported (8 or 16)")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"image is {width}x{height} = {width * height:,} pixels, over the limit "
            f"of {max_pixels:,}"
        )


def swap_red_blue(data: bytes, channels: int, depth: int) -> bytes:
    """Swap the first and third channel (RGBA <-> BGRA) with C-speed slice copies."""
    n = depth // 8
    stride = channels * n
    out = bytearray(data)
    for lane in range(n):
        out[lane::stride] = data[2 * n + lane :: stride]
        out[2 * n + lane :: stride] = data[lane::stride]
    return bytes(out)


def _quantise(arr, dtype, top: int, rows: int = 256):
    """Floats in 0..1 -> integers 0..top, rounded, NaN as 0; a band of rows at a time so
    a 4096 px frame needs no float temporaries of its own size."""
    import numpy as np

    out = np.empty(arr.shape, dtype)
    for r in range(0, arr.shape[0], rows):
        band = np.nan_to_num(arr[r : r + rows], nan=0.0, posinf=1.0, neginf=0.0)
        out[r : r + rows] = np.clip(band, 0.0, 1.0) * top + 0.5
    return out
