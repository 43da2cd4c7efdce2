"""`impasto install-plugin krita` and the vendoring it relies on, into throwaway folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from impasto.plugin import binary_deps, install_krita, vendor
from impasto.shared.errors import ImpastoError
from tests.krita_harness import INSTALL_HINT, missing_tools

SYSTEM_PYTHON = "/usr/bin/python3"  # the interpreter Debian's Krita embeds (3.11)


def _kritarc(tmp_path: Path) -> Path:
    return tmp_path / "config" / "kritarc"


def test_install_puts_plugin_vendor_and_enable_flag_in_place(tmp_path):
    kritarc = _kritarc(tmp_path)
    kritarc.parent.mkdir(parents=True)
    kritarc.write_text("[General]\nfoo=bar\n\n[python]\nenable_other=true\n\n[Theme]\nx=1\n")
    package = install_krita.install(tmp_path / "res", kritarc=kritarc)
    pykrita = tmp_path / "res" / "pykrita"
    assert package == pykrita / "impasto_krita"
    assert (pykrita / "impasto_krita.desktop").read_text().count("Krita/PythonPlugin") == 1
    for name in ("__init__.py", "adapter.py", "dialog.py", "extension.py", "qtimage.py"):
        assert (package / name).is_file(), name
    assert (package / "vendor" / "impasto" / "plugin" / "client.py").is_file()
    assert (package / "vendor" / "impasto" / "plugin" / "hostjob.py").is_file()
    assert not (package / "vendor" / "impasto" / "plugin" / "krita").exists()
    text = kritarc.read_text()
    assert "foo=bar" in text and "enable_other=true" in text and "[Theme]\nx=1" in text
    assert "enable_impasto_krita=true" in text.split("[python]")[1].split("[Theme]")[0]
    assert install_krita.is_enabled(kritarc)
    # a second install replaces, never duplicates
    install_krita.install(pykrita, kritarc=kritarc)
    assert kritarc.read_text().count("enable_impasto_krita") == 1
    assert install_krita.check(pykrita, kritarc=kritarc) == []


def test_kritarc_is_created_when_missing_and_flag_flipped(tmp_path):
    kritarc = _kritarc(tmp_path)
    install_krita.enable_in_kritarc(kritarc)
    assert kritarc.read_text() == "[python]\nenable_impasto_krita=true\n"
    kritarc.write_text("[python]\nenable_impasto_krita=false\n")
    assert not install_krita.is_enabled(kritarc)
    install_krita.enable_in_kritarc(kritarc)
    assert install_krita.is_enabled(kritarc)
    assert kritarc.read_text().count("enable_impasto_krita") == 1


def test_check_names_each_missing_piece(tmp_path):
    kritarc = _kritarc(tmp_path)
    problems = install_krita.check(tmp_path / "pykrita", kritarc=kritarc)
    assert any("impasto_krita.desktop is missing" in p for p in problems), problems
    assert any("install-plugin krita" in p for p in problems)

    package = install_krita.install(tmp_path / "pykrita", kritarc=kritarc)
    (package / "adapter.py").write_text("# an old version\n")
    (package / "vendor" / "impasto" / "plugin" / "hostjob.py").unlink()
    kritarc.write_text("[python]\n")
    problems = install_krita.check(tmp_path / "pykrita", kritarc=kritarc)
    text = "\n".join(problems)
    assert "outdated (adapter.py)" in text
    assert "hostjob.py" in text
    assert "not enabled" in text


def test_vendored_client_imports_in_krita_python_without_the_package(tmp_path):
    """What Krita's Python sees: the vendored copy, pyzmq + msgpack, no numpy/torch."""
    package = install_krita.install(tmp_path / "pykrita", kritarc=_kritarc(tmp_path))
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import impasto.plugin.client as c, impasto.plugin.hostjob as h;"
        "print(c.__file__); print(h.options_from_settings({'size': '64'}).size);"
        "print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", code, str(package / "vendor")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0].startswith(str(package / "vendor"))
    assert out[1:] == ["64", "False", "False"]


def test_runtime_deps_checked_with_the_editor_python(tmp_path):
    assert vendor.check_runtime_deps(tmp_path, [SYSTEM_PYTHON]) == []
    # without site-packages (-S) the same interpreter lacks zmq and msgpack
    problems = vendor.check_runtime_deps(tmp_path, [SYSTEM_PYTHON, "-S"])
    assert len(problems) == 2
    assert "zmq does not import" in "\n".join(problems)
    problems = vendor.check_runtime_deps(tmp_path, [str(tmp_path / "no-such-python")])
    assert "cannot run the editor's Python" in problems[0]


def test_install_reports_a_python_that_cannot_get_the_deps(tmp_path):
    # an empty wheelhouse and no index: nothing can be fetched, and install says why
    empty = tmp_path / "wheels"
    empty.mkdir()
    problems = vendor.ensure_runtime_deps(tmp_path / "v", [SYSTEM_PYTHON, "-S"], wheelhouse=empty)
    assert problems and "could not download pyzmq and msgpack wheels" in problems[0]
    with pytest.raises(ImpastoError, match="cannot use it yet"):
        install_krita.install(
            tmp_path / "pykrita", kritarc=_kritarc(tmp_path), python=[str(tmp_path / "nope")]
        )


@pytest.mark.slow
def test_missing_deps_are_vendored_from_wheels(tmp_path, wheelhouse):
    """A Python without zmq/msgpack gets wheels for its own ABI in a tagged folder."""
    dest = tmp_path / "vendor"
    vendor.vendor_client(dest)
    assert vendor.ensure_runtime_deps(dest, [SYSTEM_PYTHON, "-S"], wheelhouse=wheelhouse) == []
    tag = vendor.probe_python([SYSTEM_PYTHON, "-S"], dest)["tag"]
    assert tag == "cp311-linux-x86_64"
    assert (dest / "wheels" / tag / "zmq").is_dir() and (dest / "wheels" / tag / "msgpack").is_dir()
    assert not (dest / "zmq").exists()  # nothing untagged that another Python could pick up
    info = vendor.probe_python([SYSTEM_PYTHON, "-S"], dest)
    assert info["from"]["zmq"].startswith(str(dest / "wheels" / tag))
    assert vendor.check_runtime_deps(dest, [SYSTEM_PYTHON, "-S"]) == []


def test_wheels_of_another_python_are_ignored_for_the_system_copy(tmp_path, wheelhouse):
    """The "source tree" failure: wheels for 3.14 must not shadow 3.11's own zmq."""
    dest = tmp_path / "vendor"
    vendor.vendor_client(dest)
    vendor.vendor_wheels(dest, vendor.Target("3.14", "linux", "x86_64"), wheelhouse)
    (dest / "zmq").mkdir()  # the old untagged layout: removed by the next vendoring
    vendor.vendor_client(dest)
    assert not (dest / "zmq").exists()
    info = vendor.probe_python([SYSTEM_PYTHON], dest)
    assert info["missing"] == {} and info["wheels"] is None
    assert info["from"]["zmq"].startswith("/usr/lib/python3/dist-packages/")
    # and a Python with neither gets a message naming it and the fix
    problems = vendor.check_runtime_deps(dest, [SYSTEM_PYTHON, "-S"])
    text = "\n".join(problems)
    assert "Python 3.11" in text and "cp314-linux-x86_64" in text and "install-plugin" in text


def test_chroot_paths_are_translated(tmp_path):
    root = tmp_path / "root"
    inner = root / "opt" / "plugin"
    inner.mkdir(parents=True)
    assert vendor._path_inside(["chroot", str(root), "python3"], inner) == "/opt/plugin"
    with pytest.raises(ImpastoError, match="outside the chroot"):
        vendor._path_inside(["chroot", str(root), "python3"], tmp_path)
    assert vendor._path_inside([sys.executable], inner) == str(inner.resolve())


def test_missing_editor_tools_are_named_with_the_install_command(monkeypatch, tmp_path):
    """The Krita tests fail (never skip) with this when krita or xvfb-run is absent."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert missing_tools() == ["krita", "xvfb-run"]
    assert "apt-get install krita xvfb" in INSTALL_HINT
    monkeypatch.setenv("HOME", str(tmp_path))  # no AppImage in ~/Applications either
    problems = install_krita.check(tmp_path / "pykrita", kritarc=_kritarc(tmp_path))
    assert problems[0].startswith("Krita is not installed here (looked for `krita` on PATH")
    assert "package-plugin krita" in problems[0]
    with pytest.raises(ImpastoError, match="Krita is not installed here"):
        install_krita.install(tmp_path / "pykrita", kritarc=_kritarc(tmp_path))
    assert not (tmp_path / "pykrita").exists()  # nothing half-installed


@pytest.mark.krita  # the host's Debian Krita 5.1.5
def test_krita_python_is_the_one_krita_links_not_the_first_on_path(monkeypatch, tmp_path):
    """A python3.11 earlier on PATH (a pyenv shim, a venv) is not the Python Krita runs."""
    shim = tmp_path / "python3.11"
    shim.write_text("#!/bin/sh\nexit 1\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    found = install_krita.find()[0]
    assert found.kind == "package" and found.version == "5.1.5"
    assert found.python == [SYSTEM_PYTHON + ".11"]  # Debian's, beside libpython3.11
    assert "Krita 5.1.5 (package: " in found.describe()


@pytest.mark.parametrize(
    ("system", "bundle_file", "tag"),
    [
        ("win32", "PROGRAMFILES/Krita (x64)/bin/python310.dll", "cp310-windows-amd64"),
        (
            "darwin",
            "HOME/Applications/krita.app/Contents/Frameworks/Python.framework/Versions/3.13/Python",
            "cp313-macos-universal2",
        ),
    ],
)
def test_windows_and_macos_krita_get_wheels_for_their_bundled_python(
    system, bundle_file, tag, monkeypatch, tmp_path, wheelhouse
):
    """Krita's own builds: found in their usual place, Python read from the bundle, the
    plug-in put in that platform's resource folder with wheels for exactly that Python."""
    monkeypatch.setattr(sys, "platform", system)
    for var in ("PROGRAMFILES", "HOME", "APPDATA", "LOCALAPPDATA"):
        monkeypatch.setenv(var, str(tmp_path / var))
    monkeypatch.delenv("IMPASTO_KRITA_PYTHON", raising=False)
    made = tmp_path / bundle_file
    made.parent.mkdir(parents=True)
    made.write_bytes(b"")
    if system == "win32":
        (tmp_path / "PROGRAMFILES/Krita (x64)/bin/krita.exe").write_bytes(b"")
    found = install_krita.find()
    assert [f.kind for f in found] == ["windows" if system == "win32" else "macos"]
    package = install_krita.install(wheelhouse=wheelhouse)
    resources = {
        "win32": tmp_path / "APPDATA" / "krita",
        "darwin": tmp_path / "HOME" / "Library" / "Application Support" / "krita",
    }[system]
    assert package == resources / "pykrita" / "impasto_krita"
    assert binary_deps.bundled_tags(str(package / "vendor")) == [tag]
    assert (package / "vendor" / "wheels" / tag / "zmq").is_dir()
    kritarc = {
        "win32": tmp_path / "LOCALAPPDATA" / "kritarc",
        "darwin": tmp_path / "HOME" / "Library" / "Preferences" / "kritarc",
    }[system]
    assert install_krita.is_enabled(kritarc)
    assert install_krita.check() == []
