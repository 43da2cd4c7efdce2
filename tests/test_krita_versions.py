"""The Krita plug-in in Krita 5.3 (PyQt5, Python 3.14) and Krita 6.0 (PyQt6), Debian sid.

The host's Krita 5.1.5 runs tests/test_krita_plugin.py; here the same self-test (the
scripting entry with its frames and .kra, and the dialog) runs in the Krita of a cached
Debian chroot (tests/debian_chroot.py), through the same harness. Krita 6 refuses
PyQt5, so this is where the plug-in's Qt binding choice (impasto_krita/qt.py) is
proved; Krita 5.3 has Python 3.14, so the install there vendors for that Python.
"""

from __future__ import annotations

import shutil

import pytest

from tests import debian_chroot, test_krita_plugin
from tests.krita_harness import KritaHome

pytestmark = [pytest.mark.krita, pytest.mark.slow]

KRITAS = {"5.3": debian_chroot.SID, "6.0": debian_chroot.KRITA6}


@pytest.fixture(scope="module", params=sorted(KRITAS), ids=lambda v: f"krita{v}")
def chroot_krita(request):
    """(Krita series, its cached chroot), built on first use."""
    try:
        root = debian_chroot.ensure_root(KRITAS[request.param])
    except debian_chroot.ChrootUnavailable as exc:
        pytest.fail(str(exc))
    if shutil.which("unshare") is None:
        pytest.fail("running Krita in a chroot needs unshare (util-linux) to mount /proc")
    return request.param, root


@pytest.fixture(scope="module")
def krita_home(chroot_krita):
    home = KritaHome(None, chroot=chroot_krita[1])
    yield home
    home.close()


def test_version_and_binding_are_the_expected_ones(chroot_krita, krita_home, tmp_path):
    series, _ = chroot_krita
    spec = {"probe_only": True}
    facts = krita_home.run(spec, tmp_path / "out")
    assert facts["ok"], facts.get("traceback")
    assert facts["krita_version"].startswith(series)
    assert facts["qt_binding"] == ("PyQt6" if series == "6.0" else "PyQt5")
    assert facts["plugin_loaded"], facts


def test_frames_land_in_a_group_above_the_source(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    test_krita_plugin.test_frames_land_in_a_group_above_the_source(
        krita_home, source_png, starry_night, daemon, tmp_path
    )


def test_dialog_runs_pumps_cancels_and_remembers(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    test_krita_plugin.test_dialog_runs_pumps_cancels_and_remembers(
        krita_home, source_png, starry_night, daemon, tmp_path
    )


def test_the_stylise_animation_action_fills_the_timeline(
    krita_home, source_png, starry_night, daemon, tmp_path
):
    test_krita_plugin.test_the_stylise_animation_action_fills_the_timeline(
        krita_home, source_png, starry_night, daemon, tmp_path
    )
