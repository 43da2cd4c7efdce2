"""The plug-in zip through Krita 6's own importer, then used: what a painter does.

Krita's *Tools › Scripts › Import Python Plugin from File…* runs plugin_importer's
PluginImporter on the chosen zip and, on "enable now? yes", writes the enable flag;
the self-test does exactly that (without the two dialogs) in Krita 6.0 (Debian
experimental, PyQt6, Python 3.14), then a fresh Krita loads the imported plug-in, which
takes the zip's wheels for its Python, and stylises a layer.
"""

from __future__ import annotations

import pytest

from impasto.plugin import install_krita, package_zip
from tests import debian_chroot, test_krita_plugin
from tests.krita_harness import KritaHome

pytestmark = [pytest.mark.krita, pytest.mark.slow]


@pytest.fixture(scope="module")
def krita6_home():
    try:
        root = debian_chroot.ensure_root(debian_chroot.KRITA6)
    except debian_chroot.ChrootUnavailable as exc:
        pytest.fail(str(exc))
    home = KritaHome(None, chroot=root, install=False)
    yield home
    home.close()


def test_imported_zip_is_a_working_plugin_in_krita6(
    krita6_home,
    wheelhouse,
    source_png,
    starry_night,
    daemon,
    tmp_path,
):
    home = krita6_home
    zipped, _ = package_zip.build("krita", "linux", tmp_path, ["3.14"], wheelhouse=wheelhouse)
    facts = home.run({"import_zip": str(zipped)}, tmp_path / "import")
    assert facts["ok"], facts.get("traceback")
    assert facts["qt_major"] == 6
    assert facts["imported"] == ["impasto_krita"]
    package = home.pykrita / "impasto_krita"
    assert (package / "vendor" / "wheels" / "cp314-linux-x86_64" / "zmq").is_dir()
    assert install_krita.is_enabled(home.kritarc)  # "enable now": yes

    facts = home.run({"probe_only": True}, tmp_path / "probe")  # Krita restarted
    assert facts["ok"], facts.get("traceback")
    assert facts["plugin_loaded"] and facts["action_found"], facts
    assert "/impasto_krita/vendor/wheels/cp314-linux-x86_64/zmq/" in facts["zmq_file"]

    test_krita_plugin.test_frames_land_in_a_group_above_the_source(
        home, source_png, starry_night, daemon, tmp_path
    )
