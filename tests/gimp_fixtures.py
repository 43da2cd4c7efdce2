"""Fixtures the GIMP tests share: the chroot with the plug-in installed, an X server.

Import them into a test module (``from tests.gimp_fixtures import gimp_root``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from impasto.plugin import install_gimp
from tests import gimp_chroot
from tests.daemon_fixture import give_token_to_chroot


@pytest.fixture(scope="session")
def gimp_root() -> Path:
    """The cached chroot (built on first use) with the plug-in freshly installed."""
    try:
        root = gimp_chroot.ensure_root()
    except gimp_chroot.ChrootUnavailable as exc:
        pytest.fail(str(exc))
    if os.geteuid() != 0:
        pytest.fail(f"running GIMP 3 in the chroot {root} needs root (chroot needs uid 0)")
    install_gimp.install(dest=root / gimp_chroot.PLUGIN_DIR_IN_ROOT)
    give_token_to_chroot(root)
    return root


@pytest.fixture(scope="session")
def x_display():
    """A private Xvfb for the GUI GIMP; yields its DISPLAY (e.g. ":3")."""
    if shutil.which("Xvfb") is None:
        pytest.fail("the GIMP dialog test needs Xvfb on the host (apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-nolisten", "tcp", "-screen", "0", "1280x1024x24"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()  # Xvfb writes its display number when ready
    if not number:
        proc.kill()
        pytest.fail("Xvfb did not start")
    yield f":{number}"
    proc.terminate()
    proc.wait(10)
