"""Read a saved .kra independently of Krita: layer tree, merged image, layer pixels.

A .kra is a zip: ``maindoc.xml`` describes the layer tree, ``mergedimage.png`` is the
flattened image, and each paint layer's pixels sit in ``<image>/layers/<file>`` as
64x64 tiles, LZF-compressed with the bytes of each pixel stored plane by plane. The
tests use this to check what Krita really wrote, not only what the plug-in reported.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NS = "{http://www.calligra.org/DTD/krita}"
KEYFRAMES_NS = "{http://www.calligra.org/DTD/krita-keyframes}"


@dataclass
class KraNode:
    name: str
    nodetype: str
    filename: str
    x: int
    y: int
    colorspace: str
    visible: bool = True
    keyframes_file: str = ""
    children: list[KraNode] = field(default_factory=list)
    masks: list[KraNode] = field(default_factory=list)

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Kra:
    path: Path
    width: int
    height: int
    image_name: str
    colorspace: str
    root: KraNode

    def nodes(self) -> list[KraNode]:
        return [n for n in self.root.walk() if n is not self.root]

    def find(self, name: str) -> KraNode:
        for node in self.nodes():
            if node.name == name:
                return node
        raise KeyError(f"no layer named {name!r} in {self.path}: {[n.name for n in self.nodes()]}")

    def merged(self) -> np.ndarray:
        """The flattened image Krita stored (RGBA uint8)."""
        from PIL import Image

        with zipfile.ZipFile(self.path) as zf:
            return np.asarray(Image.open(io.BytesIO(zf.read("mergedimage.png"))).convert("RGBA"))

    def pixels(self, node: KraNode, suffix: str = "") -> np.ndarray:
        """A layer's pixels on the canvas: (H, W, pixel bytes) uint8, as Krita stores them
        (BGRA for RGBA layers; little-endian byte pairs for 16 bit)."""
        with zipfile.ZipFile(self.path) as zf:
            base = f"{self.image_name}/layers/{node.filename}{suffix}"
            data = zf.read(base)
            default = (
                zf.read(base + ".defaultpixel") if base + ".defaultpixel" in zf.namelist() else None
            )
        return decode_tiles(data, self.width, self.height, node.x, node.y, default)

    def keyframes(self, node: KraNode) -> dict[int, tuple[str, int, int]]:
        """An animated layer's content keyframes: time -> (frame file, x, y offset)."""
        if not node.keyframes_file:
            return {}
        with zipfile.ZipFile(self.path) as zf:
            root = ET.fromstring(zf.read(f"{self.image_name}/layers/{node.keyframes_file}"))
        keys = {}
        for channel in root.iter(f"{KEYFRAMES_NS}channel"):
            if channel.get("name") != "content":
                continue
            for key in channel.iter(f"{KEYFRAMES_NS}keyframe"):
                offset = key.find(f"{KEYFRAMES_NS}offset")
                dx = int(float(offset.get("x", "0"))) if offset is not None else 0
                dy = int(float(offset.get("y", "0"))) if offset is not None else 0
                keys[int(_attr(key, "time"))] = (_attr(key, "frame"), dx, dy)
        return keys

    def frame_pixels(self, node: KraNode, time: int) -> np.ndarray:
        """The pixels of an animated layer's keyframe at ``time`` (as ``pixels``)."""
        frame, dx, dy = self.keyframes(node)[time]
        with zipfile.ZipFile(self.path) as zf:
            base = f"{self.image_name}/layers/{frame}"
            data = zf.read(base)
            default = (
                zf.read(base + ".defaultpixel") if base + ".defaultpixel" in zf.namelist() else None
            )
        return decode_tiles(data, self.width, self.height, node.x + dx, node.y + dy, default)

    def playback_range(self) -> tuple[int, int] | None:
        """The document's animation range (from, to), if it has one."""
        with zipfile.ZipFile(self.path) as zf:
            root = ET.fromstring(zf.read("maindoc.xml"))
        rng = root.find(f"{NS}IMAGE/{NS}animation/{NS}range")
        return None if rng is None else (int(_attr(rng, "from")), int(_attr(rng, "to")))


def read_kra(path: Path) -> Kra:
    with zipfile.ZipFile(path) as zf:
        root = ET.fromstring(zf.read("maindoc.xml"))
    image = root.find(f"{NS}IMAGE")
    if image is None:
        raise ValueError(f"{path}: maindoc.xml has no IMAGE element")
    tree = KraNode("root", "root", "", 0, 0, image.get("colorspacename", ""))
    tree.children = _layers(image.find(f"{NS}layers"))
    return Kra(
        Path(path),
        int(_attr(image, "width")),
        int(_attr(image, "height")),
        _attr(image, "name"),
        image.get("colorspacename", ""),
        tree,
    )


def _attr(element: ET.Element, name: str) -> str:
    """An attribute Krita always writes: without it the file is broken, so say which."""
    value = element.get(name)
    if value is None:
        raise ValueError(f"<{element.tag}> has no {name!r} attribute")
    return value


def _layers(element: ET.Element | None) -> list[KraNode]:
    if element is None:
        return []
    nodes = []
    for el in element:
        node = KraNode(
            el.get("name", ""),
            el.get("nodetype", ""),
            el.get("filename", ""),
            int(float(el.get("x", "0"))),
            int(float(el.get("y", "0"))),
            el.get("colorspacename", ""),
            el.get("visible", "1") == "1",
            el.get("keyframes", ""),
        )
        node.children = _layers(el.find(f"{NS}layers"))
        node.masks = _layers(el.find(f"{NS}masks"))
        nodes.append(node)
    return list(reversed(nodes))  # maindoc lists the top layer first: return bottom-up


def lzf_decompress(data: bytes, out_len: int) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        ctrl = data[i]
        i += 1
        if ctrl < 32:
            out += data[i : i + ctrl + 1]
            i += ctrl + 1
            continue
        length = ctrl >> 5
        ref = len(out) - ((ctrl & 0x1F) << 8) - 1
        if length == 7:
            length += data[i]
            i += 1
        ref -= data[i]
        i += 1
        for _ in range(length + 2):
            out.append(out[ref])
            ref += 1
    if len(out) != out_len:
        raise ValueError(f"LZF tile decoded to {len(out)} bytes, expected {out_len}")
    return bytes(out)


def decode_tiles(data: bytes, width: int, height: int, dx: int, dy: int, default=None):
    """Krita's tiled paint-device format (VERSION 2) onto a canvas-sized array."""
    stream = io.BytesIO(data)
    header = {}
    for _ in range(5):
        key, _, value = stream.readline().decode().strip().partition(" ")
        header[key] = value
    if header.get("VERSION") != "2":
        raise ValueError(f"unknown tile format {header}")
    tw, th = int(header["TILEWIDTH"]), int(header["TILEHEIGHT"])
    psize = int(header["PIXELSIZE"])
    canvas = np.zeros((height, width, psize), np.uint8)
    if default:
        canvas[:] = np.frombuffer(default, np.uint8)[:psize]
    for _ in range(int(header["DATA"])):
        x, y, method, size = stream.readline().decode().strip().split(",")
        blob = stream.read(int(size))
        raw = blob[1:]
        if blob[0] == 1 and method == "LZF":
            raw = lzf_decompress(raw, tw * th * psize)
        planes = np.frombuffer(raw, np.uint8).reshape(psize, th * tw)
        tile = planes.T.reshape(th, tw, psize)
        x0, y0 = int(x) + dx, int(y) + dy
        cx0, cy0 = max(x0, 0), max(y0, 0)
        cx1, cy1 = min(x0 + tw, width), min(y0 + th, height)
        if cx1 > cx0 and cy1 > cy0:
            canvas[cy0:cy1, cx0:cx1] = tile[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return canvas
