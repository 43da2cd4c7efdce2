"""`impasto package-plugin`: zips for Krita's importer and for GIMP, on three platforms.

Structural (no Windows or macOS here): each zip has the layout its editor takes and one
wheels folder per documented Python whose wheels carry tags for that Python and
platform. Krita's own importer code (plugin_importer.py, from the installed Krita) is
run on the Linux zip; the full path through a real Krita 6 is in test_krita_zip.py.
Wheels come from the cached wheel folder (tests/wheelhouse.py), not the network.
"""

from __future__ import annotations

import re
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from impasto.cli.main import main as cli_main
from impasto.plugin import package_pythons, package_zip
from impasto.plugin.vendor import Target
from impasto.shared.errors import ImpastoError

KRITA_IMPORTER = Path("/usr/share/krita/pykrita/plugin_importer/plugin_importer.py")
# Extension-module file names per platform: what the editor's Python will try to load.
SUFFIXES = {
    "linux": ("-x86_64-linux-gnu.so", ".abi3.so"),
    "windows": ("-win_amd64.pyd", ".pyd"),
    "macos": ("-darwin.so", ".abi3.so"),
}


def _wheel_tags(archive: zipfile.ZipFile, folder: str) -> dict[str, list[str]]:
    """{distribution: [Tag lines of its WHEEL file]} inside one wheels/<tag> folder."""
    tags = {}
    for name in archive.namelist():
        if name.startswith(folder) and name.endswith(".dist-info/WHEEL"):
            dist = name[len(folder) :].split("-")[0]
            text = archive.read(name).decode()
            tags[dist] = [
                line.split(":", 1)[1].strip()
                for line in text.splitlines()
                if line.startswith("Tag:")
            ]
    return tags


def _tag_fits(tag: str, target: Target) -> bool:
    py, abi, plat = tag.split("-")
    fake_wheel = f"x-1-{py}-{abi}-{plat}.whl"
    return target.wheel_fits(fake_wheel)


@pytest.mark.parametrize("platform", package_pythons.PLATFORMS)
def test_krita_zip_has_the_importer_layout_and_wheels_per_python(platform, wheelhouse, tmp_path):
    out, targets = package_zip.build("krita", platform, tmp_path, wheelhouse=wheelhouse)
    assert out.name == f"impasto-krita-{platform}.zip"
    assert [t.version for t in targets] == package_pythons.default_pythons("krita", platform)
    with zipfile.ZipFile(out) as archive:
        names = set(archive.namelist())
        # what Krita's PluginImporter looks for: a .desktop naming the module, and the
        # module's folder entry with an __init__.py in it
        assert "impasto_krita.desktop" in names
        assert "X-KDE-Library=impasto_krita" in archive.read("impasto_krita.desktop").decode()
        assert {"impasto_krita/", "impasto_krita/__init__.py", "impasto_krita/qt.py"} <= names
        client = "impasto_krita/vendor/impasto/plugin/"
        assert {client + "client.py", client + "binary_deps.py", client + "hostjob.py"} <= names
        folders = sorted(
            {
                n.split("/")[3]
                for n in names
                if n.startswith("impasto_krita/vendor/wheels/") and n.count("/") > 3
            }
        )
        assert folders == sorted(t.tag for t in targets)
        for target in targets:
            folder = f"impasto_krita/vendor/wheels/{target.tag}/"
            tags = _wheel_tags(archive, folder)
            assert set(tags) == {"pyzmq", "msgpack"}, tags
            for dist, lines in tags.items():
                assert lines and all(_tag_fits(t, target) for t in lines), (dist, lines)
            binaries = [n for n in names if n.startswith(folder) and n.endswith((".so", ".pyd"))]
            assert any("/zmq/" in n for n in binaries) and any("/msgpack/" in n for n in binaries)
            assert all(n.endswith(SUFFIXES[platform]) for n in binaries), binaries
            nodot = target.version.replace(".", "")
            for n in binaries:  # a version-tagged binary is for exactly this Python
                tagged = re.search(r"\.(?:cp|cpython-)(3\d+)", n.rsplit("/", 1)[1])
                assert tagged is None or tagged.group(1) == nodot, n


def test_gimp_zip_unpacks_into_an_executable_plugin_folder(wheelhouse, tmp_path):
    out, targets = package_zip.build("gimp", "macos", tmp_path, wheelhouse=wheelhouse)
    with zipfile.ZipFile(out) as archive:
        main = archive.getinfo("impasto-style-transfer/impasto-style-transfer.py")
        assert (main.external_attr >> 16) & stat.S_IXUSR  # GIMP 3 runs only executables
        names = archive.namelist()
        assert "impasto-style-transfer/impasto/plugin/binary_deps.py" in names
        for target in targets:
            assert f"impasto-style-transfer/wheels/{target.tag}/zmq/" in names


@pytest.mark.krita  # Krita's importer code, from the installed Krita
def test_krita_importer_code_installs_the_linux_zip(wheelhouse, tmp_path):
    """Krita's own plugin_importer.py, as its __main__ runs it, into a resource folder."""
    if not KRITA_IMPORTER.is_file():
        pytest.fail(
            f"Krita's plug-in importer is missing ({KRITA_IMPORTER}): apt-get install krita"
        )
    out, _ = package_zip.build("krita", "linux", tmp_path, ["3.11"], wheelhouse=wheelhouse)
    resources = tmp_path / "resources"
    resources.mkdir()
    code = f"import builtins; builtins.i18n = str; exec(open({str(KRITA_IMPORTER)!r}).read())"
    done = subprocess.run(
        ["/usr/bin/python3", "-c", code, str(out), str(resources)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Imported plugin: Impasto" in done.stdout
    package = resources / "pykrita" / "impasto_krita"
    assert (resources / "pykrita" / "impasto_krita.desktop").is_file()
    assert (package / "vendor" / "wheels" / "cp311-linux-x86_64" / "zmq").is_dir()
    # the imported client takes the wheels for this Python, with Krita's Python (3.11)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from impasto.plugin import binary_deps; binary_deps.activate(sys.argv[1]);"
        "import zmq, msgpack, impasto.plugin.client; print(zmq.__file__)"
    )
    done = subprocess.run(
        ["/usr/bin/python3", "-S", "-c", probe, str(package / "vendor")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(package / "vendor" / "wheels" / "cp311-linux-x86_64"))


def test_cli_builds_a_zip_and_rejects_bad_input(wheelhouse, tmp_path, capsys):
    rc = cli_main(
        ["package-plugin", "krita", "--platform", "windows", "--python", "3.13",
         "--out", str(tmp_path), "--wheelhouse", str(wheelhouse)]
    )  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "impasto-krita-windows.zip" in text and "Python 3.13" in text
    assert "Import Python Plugin from File" in text
    with zipfile.ZipFile(tmp_path / "impasto-krita-windows.zip") as archive:
        assert "impasto_krita/vendor/wheels/cp313-windows-amd64/zmq/" in archive.namelist()
    with pytest.raises(ImpastoError, match=r"CPython version such as 3\.13"):
        package_zip.build("krita", "linux", tmp_path, ["3"], wheelhouse=wheelhouse)
    with pytest.raises(ImpastoError, match="could not download pyzmq and msgpack wheels"):
        package_zip.build("krita", "linux", tmp_path, ["3.99"], wheelhouse=wheelhouse)


def test_every_listed_python_is_documented_with_its_source():
    """The table the zips default to and docs/editor-pythons.md say the same."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "editor-pythons.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("|")]
    for (editor, platform), releases in package_pythons.BUNDLED_PYTHONS.items():
        for release, python in releases.items():
            name = {"krita": "Krita", "gimp": "GIMP"}[editor]
            assert any(
                f"| {name} {release} |" in row
                and f"| {platform} |" in row
                and f"| {python} |" in row
                for row in rows
            ), (editor, platform, release, python)
