"""Fixtures every test area shares: the real test images and a scratch state dir."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The test images travel with the repository (tests/images, licences in its CREDITS.md),
# so the suite runs from any fresh clone.
IMAGES = Path(os.environ.get("IMPASTO_TEST_IMAGES", REPO / "tests" / "images"))

# Area-specific fixtures live in their own modules.
pytest_plugins: list[str] = ["tests.daemon_fixture", "tests.wheelhouse", "tests.krita_fixtures"]


@pytest.fixture(scope="session")
def images_dir() -> Path:
    if not (IMAGES / "tubingen.jpg").exists():
        pytest.fail(f"test images not found in {IMAGES}; set IMPASTO_TEST_IMAGES")
    return IMAGES


@pytest.fixture(scope="session")
def tubingen(images_dir: Path) -> Path:
    return images_dir / "tubingen.jpg"


@pytest.fixture(scope="session")
def starry_night(images_dir: Path) -> Path:
    return images_dir / "starry_night.jpg"


@pytest.fixture(scope="session")
def grace_hopper(images_dir: Path) -> Path:
    return images_dir / "grace_hopper.jpg"


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, tmp_path, monkeypatch):
    """Keep every test's daemon lock, log and keys out of the real user's folders, and
    forbid downloads: nothing may fetch weights at run time in tests."""
    root = tmp_path_factory.mktemp("xdg")
    for var in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(root / var.lower()))
    monkeypatch.setenv("IMPASTO_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


# Tests that drive a real host program (Krita under Xvfb, GIMP 3 or another editor in a
# chroot, a local Ray cluster) also carry the "hosts" marker, so `pytest -m "not hosts"`
# is the fast tier: no root, no editors, no cluster.
HOST_MARKERS = ("krita", "gimp", "ray")


def pytest_collection_modifyitems(config, items):
    # Ray is an optional extra: without it the cluster tests say how to get it.
    no_ray = pytest.mark.skip(reason="Ray is not installed: pip install -e '.[cluster]'")
    have_ray = importlib.util.find_spec("ray") is not None
    for item in items:
        if any(item.get_closest_marker(name) for name in HOST_MARKERS):
            item.add_marker(pytest.mark.hosts)
        if item.get_closest_marker("ray") and not have_ray:
            item.add_marker(no_ray)
