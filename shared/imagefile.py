"""Image files <-> RawImage, with errors that say what is wrong with a file.

Pillow does the decoding. The pixel count is checked from the header before any pixel
is decoded, so a decompression bomb costs nothing. Every mode Pillow opens is turned
into RGB or RGBA: grayscale and palette images become RGB (RGBA where they carry
transparency), CMYK and other colour spaces are converted, 16-bit grayscale keeps its
16 bits. Needs Pillow (and NumPy only for 16-bit data), never torch.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

from .errors import BAD_IMAGE, BAD_OPTIONS, IMAGE_TOO_LARGE, ImpastoError
from .options import DEFAULT_MAX_PIXELS
from .rawimage import ImageError, RawImage

SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def load_image(
    source: str | os.PathLike | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> RawImage:
    """Decode a file path or encoded bytes into an 8- or 16-bit RGB(A) RawImage."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name, data = _read(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImpastoError(f"{name} is empty ({width}x{height} pixels)", BAD_IMAGE)
            if width * height > max_pixels:
                raise ImpastoError(
                    f"{name} is {width}x{height} = {width * height:,} pixels, over the limit "
                    f"of {max_pixels:,}",
                    IMAGE_TOO_LARGE,
                )
            img.load()
            img = ImageOps.exif_transpose(img) or img
    except ImpastoError:
        raise
    except UnidentifiedImageError as exc:
        raise ImpastoError(f"{name} is not an image file Pillow can read", BAD_IMAGE) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImpastoError(f"{name} is too large to decode safely: {exc}", IMAGE_TOO_LARGE) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        what = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise ImpastoError(f"{name} is {what}: {exc}", BAD_IMAGE) from exc
    try:
        return _to_raw(img)
    except ImageError as exc:
        raise ImpastoError(f"{name}: {exc}", BAD_IMAGE) from exc


def _read(source) -> tuple[str, bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        data, name = bytes(source), "image data"
    else:
        path = Path(source)
        name = f"image file {str(path)!r}"
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ImpastoError(f"{name} does not exist", BAD_IMAGE) from exc
        except IsADirectoryError as exc:
            raise ImpastoError(f"{name} is a folder, not a file", BAD_IMAGE) from exc
        except OSError as exc:
            raise ImpastoError(f"{name} cannot be read: {exc.strerror or exc}", BAD_IMAGE) from exc
    if not data:
        raise ImpastoError(f"{name} is empty (0 bytes)", BAD_IMAGE)
    return name, data


def _to_raw(img) -> RawImage:
    """Any Pillow mode -> RGB/RGBA RawImage (16-bit grayscale stays 16-bit)."""
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        import numpy as np

        arr = np.clip(np.asarray(img, dtype=np.int64), 0, 65535).astype("<u2")
        rgb = np.repeat(arr[:, :, None], 3, axis=2)
        return RawImage(img.width, img.height, 3, 16, rgb.tobytes())
    if mode == "F":
        img = img.point(lambda v: v * 255.0 if v <= 1.0 else v).convert("L")
        mode = "L"
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode in ("P", "L", "RGB", "1") and "transparency" in img.info
    )
    target = "RGBA" if has_alpha else "RGB"
    if mode == "CMYK" and not has_alpha:
        img = _cmyk_to_rgb(img)
    elif img.mode != target:
        img = img.convert(target)
    return RawImage(img.width, img.height, len(target), 8, img.tobytes())


def _cmyk_to_rgb(img):
    """Honour an embedded ICC profile when there is one; plain conversion otherwise."""
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(
                img, src, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
            if converted is not None:  # None only when converting in place
                return converted
        except Exception:
            pass
    return img.convert("RGB")


def encode_image(image: RawImage, format: str = "PNG", quality: int = 95) -> bytes:
    """RawImage -> encoded bytes. JPEG drops alpha; 16-bit data is saved at 8 bit."""
    fmt = format.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt not in set(SAVE_FORMATS.values()):
        raise ImpastoError(f"cannot save images as {format!r}; use PNG or JPEG", BAD_OPTIONS)
    img = image.to_pil()
    if fmt == "JPEG" and img.mode == "RGBA":
        img = img.convert("RGB")
    buf = io.BytesIO()
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def save_image(
    image: RawImage, path: str | os.PathLike, *, format: str | None = None, quality: int = 95
) -> Path:
    """Write ``image`` to ``path``; the format follows the suffix unless given."""
    path = Path(path)
    fmt = format or SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImpastoError(
            f"cannot tell the image format from {path.name!r}; use a .png or .jpg name",
            BAD_OPTIONS,
        )
    data = encode_image(image, fmt, quality)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ImpastoError(
            f"cannot write {str(path)!r}: {exc.strerror or exc}", BAD_OPTIONS
        ) from exc
    return path
