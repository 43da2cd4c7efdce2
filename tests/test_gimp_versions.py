"""The GIMP plug-in in GIMP 3.2.6 (Debian sid, Python 3.14), besides 3.0.4 (Debian 13).

GIMP 3.2 keeps its plug-ins in ``GIMP/3.2`` and runs them with Python 3.14. The core
batch tests of tests/test_gimp.py and the animation one run here unchanged against that
GIMP: the module's own ``gimp_root`` (the sid chroot, plug-in installed by the real
installer) replaces the 3.0 one for the imported tests and their fixtures.
"""

from __future__ import annotations

import subprocess

import pytest

from impasto.plugin import install_gimp
from tests import gimp_chroot
from tests.daemon_fixture import give_token_to_chroot
from tests.test_gimp import (  # noqa: F401  (the fixture and tests re-run on GIMP 3.2)
    gimp_run,
    test_frames_land_in_a_layer_group_with_alpha_kept,
    test_selection_masks_animation_frames_on_a_16_bit_offset_layer,
)
from tests.test_gimp_animation import (  # noqa: F401  (likewise: Stylise all frames)
    animation_run,
    test_all_frames_become_a_group_of_stylised_frames_with_their_timing,
)

pytestmark = [pytest.mark.gimp, pytest.mark.slow]
SERIES = "3.2"


@pytest.fixture(scope="module")
def gimp_root():
    """The sid chroot with GIMP 3.2 and the plug-in installed into its 3.2 folder."""
    try:
        root = gimp_chroot.ensure_root(series=SERIES)
    except gimp_chroot.ChrootUnavailable as exc:
        pytest.fail(str(exc))
    install_gimp.install(dest=root / gimp_chroot.plugin_dir_in_root(SERIES))
    # The sid chroot is cached across machines: a token left there by another machine's
    # run (or none) makes the daemon refuse the plug-in, so this run's token goes in.
    give_token_to_chroot(root)
    return root


def test_this_is_gimp_3_2_with_python_3_14(gimp_root):
    version = subprocess.run(
        ["chroot", str(gimp_root), f"gimp-console-{SERIES}", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"version {SERIES}." in version, version
    python = subprocess.run(
        ["chroot", str(gimp_root), "python3", "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert python.strip() == "(3, 14)"
    plugin = gimp_root / gimp_chroot.plugin_dir_in_root(SERIES) / install_gimp.PLUGIN_NAME
    assert (plugin / f"{install_gimp.PLUGIN_NAME}.py").is_file()
