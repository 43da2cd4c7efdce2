"""A cached folder of pyzmq/msgpack wheels for every Python the packaging tests target.

The installer and ``impasto package-plugin`` download wheels with pip; the tests use
this folder instead (``--no-index --find-links``), so they need no network once it is
filled. .ci/install fills it (``python -m tests.wheelhouse fill``, PyPI needed then);
a test that finds it incomplete tries to fill it and, if PyPI cannot be reached,
skips with that reason. Location: $IMPASTO_WHEELHOUSE, default
/var/cache/impasto/wheels (outside the repository and the tests' XDG folders).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from impasto.plugin import package_pythons, vendor
from impasto.plugin.vendor import Target
from impasto.shared.errors import ImpastoError

DEFAULT = Path("/var/cache/impasto/wheels")
# The host's Python (Debian 12: 3.11) and sid's (3.14) for the installer tests, and every
# Python the plug-in zips carry by default.
TARGETS = sorted(
    {
        Target("3.11", "linux", "x86_64"),
        Target("3.14", "linux", "x86_64"),
        *(
            target
            for editor in ("krita", "gimp")
            for platform in package_pythons.PLATFORMS
            for target in package_pythons.targets(editor, platform)
        ),
    },
    key=lambda t: t.tag,
)


def path() -> Path:
    return Path(os.environ.get("IMPASTO_WHEELHOUSE", str(DEFAULT)))


def missing(folder: Path | None = None) -> list[str]:
    """Targets (tags) lacking a pyzmq or a msgpack wheel in the folder."""
    folder = folder or path()
    wheels = [p.name for p in folder.glob("*.whl")] if folder.is_dir() else []
    out = []
    for target in TARGETS:
        for dist in ("pyzmq", "msgpack"):
            if not any(w.startswith(dist + "-") and target.wheel_fits(w) for w in wheels):
                out.append(f"{dist} for {target.tag}")
    return out


def fill(folder: Path | None = None) -> Path:
    """Download what is missing (pip skips wheels already there). Needs PyPI."""
    folder = folder or path()
    folder.mkdir(parents=True, exist_ok=True)
    for target in TARGETS:
        vendor.download_wheels(target, folder)
    return folder


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """The filled wheel folder; filled now if incomplete, skipped only without PyPI."""
    folder = path()
    if missing(folder):
        try:
            fill(folder)
        except (ImpastoError, OSError) as exc:
            pytest.skip(
                f"the wheel cache {folder} is incomplete and PyPI is unreachable to fill it "
                f"(run `python -m tests.wheelhouse fill` where it is): {str(exc)[:300]}"
            )
    left = missing(folder)
    if left:
        pytest.fail(f"PyPI has no wheels for: {', '.join(left)}")
    return folder


def main(argv: list[str]) -> int:
    if argv[1:] != ["fill"]:
        print("usage: python -m tests.wheelhouse fill  (the wheels the packaging tests use)")
        return 2
    folder = fill()
    left = missing(folder)
    print(f"{folder}: {len(list(folder.glob('*.whl')))} wheels; missing: {left or 'none'}")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
