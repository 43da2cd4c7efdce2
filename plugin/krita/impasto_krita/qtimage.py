"""RawImage <-> QImage: reading style files and resizing frames with Qt, not numpy.

Krita's Python has PyQt5 but maybe no Pillow or numpy, and frames come back at the
job's output size while the layer may be larger: Qt's smooth scaling fills that gap.
"""

from __future__ import annotations

from impasto.shared.errors import BAD_IMAGE, ImpastoError
from impasto.shared.rawimage import RawImage

from .qt import QImage, QImageReader, QPainter, Qt

_FORMATS = {8: QImage.Format.Format_RGBA8888, 16: QImage.Format.Format_RGBA64}


def to_qimage(raw: RawImage) -> QImage:
    """A QImage owning a copy of the pixels (RGBA 8 bit or RGBA64)."""
    rgba = raw.with_alpha()
    bpl = rgba.width * 4 * rgba.bytes_per_sample
    image = QImage(rgba.data, rgba.width, rgba.height, bpl, _FORMATS[rgba.depth])
    return image.copy()  # detach from the Python bytes


def from_qimage(image: QImage, depth: int = 8) -> RawImage:
    """RGBA pixels of any QImage, 8 or 16 bit."""
    image = image.convertToFormat(_FORMATS[depth])
    width, height = image.width(), image.height()
    row = width * 4 * (depth // 8)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    data = bytes(ptr)
    bpl = image.bytesPerLine()
    if bpl != row:  # drop the per-line padding
        data = b"".join(data[y * bpl : y * bpl + row] for y in range(height))
    return RawImage(width, height, 4, depth, data)


def scaled(raw: RawImage, width: int, height: int) -> RawImage:
    """Smoothly resized to exactly width x height (unchanged if it already fits)."""
    if (raw.width, raw.height) == (width, height):
        return raw
    image = to_qimage(raw).scaled(
        width,
        height,
        Qt.AspectRatioMode.IgnoreAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )
    return from_qimage(image, raw.depth)


def load_image_file(path: str) -> RawImage:
    """A style image file as RGBA (16 bit when the file has more than 8 bits)."""
    reader = QImageReader(str(path))
    image = reader.read()
    if image.isNull():
        raise ImpastoError(f"cannot read the style image {path}: {reader.errorString()}", BAD_IMAGE)
    deep = image.depth() > 32
    return from_qimage(image, 16 if deep else 8)


def multiply_alpha(raw: RawImage, coverage: bytes) -> RawImage:
    """The image with its alpha multiplied by an 8-bit coverage map of the same size."""
    image = to_qimage(raw)
    mask = QImage(coverage, raw.width, raw.height, raw.width, QImage.Format.Format_Alpha8).copy()
    painter = QPainter(image)
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationIn)
    painter.drawImage(0, 0, mask)
    painter.end()
    return from_qimage(image, raw.depth)
