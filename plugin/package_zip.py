"""`impasto package-plugin`: a plug-in zip for a painter's machine, any platform.

Krita: the zip is what *Tools › Scripts › Import Python Plugin from File…* takes (the
layout of Krita's own plugin_importer: ``impasto_krita.desktop`` and the package folder
``impasto_krita/`` with its ``__init__.py``, at the top). GIMP 3 has no importer: the zip
holds the ``impasto-style-transfer/`` folder to unpack into GIMP's plug-ins folder.
Both carry the client and pyzmq/msgpack wheels for each target Python in its own
``wheels/<tag>`` folder; the plug-in activates only the one that fits the Python it
finds itself in (impasto.plugin.binary_deps).
"""

from __future__ import annotations

import stat
import tempfile
import zipfile
from pathlib import Path

from impasto.plugin import install_gimp, install_krita, package_pythons, vendor
from impasto.plugin.vendor import Target
from impasto.shared.errors import ImpastoError

EDITORS = ("krita", "gimp")


def zip_name(editor: str, platform: str) -> str:
    return f"impasto-{editor}-{platform}.zip"


def _stage(editor: str, staging: Path) -> Path:
    """Lay the plug-in out in ``staging``; returns the folder the wheels go in."""
    if editor == "krita":
        return install_krita.lay_out(staging) / install_krita.VENDOR_DIR
    if editor == "gimp":
        return install_gimp.lay_out(staging)
    raise ImpastoError(f"unknown editor {editor!r}: choose one of {', '.join(EDITORS)}")


def _write_zip(staging: Path, out: Path) -> None:
    """Every file and folder (folder entries too: Krita's importer looks for
    ``impasto_krita/``), keeping the executable bit GIMP needs."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(staging.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            name = path.relative_to(staging).as_posix()
            if path.is_dir():
                info = zipfile.ZipInfo(name + "/")
                info.external_attr = (stat.S_IFDIR | 0o755) << 16
                archive.writestr(info, b"")
            else:
                info = zipfile.ZipInfo.from_file(path, name)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())


def build(
    editor: str,
    platform: str,
    out_dir: Path,
    pythons: list[str] | None = None,
    wheelhouse: Path | None = None,
) -> tuple[Path, list[Target]]:
    """Build the zip for ``editor`` on ``platform``; returns it and the Pythons it serves."""
    if platform not in package_pythons.PLATFORMS:
        raise ImpastoError(
            f"unknown platform {platform!r}: choose one of {', '.join(package_pythons.PLATFORMS)}"
        )
    for version in pythons or []:
        parts = version.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts[0] != "3":
            raise ImpastoError(f"--python wants a CPython version such as 3.13, not {version!r}")
    targets = package_pythons.targets(editor, platform, pythons)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / zip_name(editor, platform)
    with tempfile.TemporaryDirectory(prefix="impasto-package-") as tmp:
        wheels_into = _stage(editor, Path(tmp))
        for target in targets:
            vendor.vendor_wheels(wheels_into, target, wheelhouse)
        _write_zip(Path(tmp), out)
    return out, targets
