"""`impasto install-plugin gimp` on the host: layout, executable bit, vendored client, check.

The install into a real GIMP 3 (and the plug-in running there) is tests/test_gimp.py;
these run without GIMP, with this Python standing in for GIMP's (it has zmq/msgpack).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from impasto.plugin import install_gimp
from impasto.shared.errors import ImpastoError

PY = [sys.executable]


def test_install_lays_out_an_executable_plugin_with_the_client(tmp_path):
    target = install_gimp.install(dest=tmp_path, python=PY)
    assert target == tmp_path / "impasto-style-transfer"
    main = target / "impasto-style-transfer.py"
    assert os.access(main, os.X_OK)
    assert main.read_text().startswith("#!/usr/bin/env python3")
    for name in ("client.py", "hostjob.py"):
        assert (target / "impasto" / "plugin" / name).is_file()
    assert not (target / "impasto" / "plugin" / "gimp").exists()
    assert install_gimp.check(dest=tmp_path, python=PY) == []
    # the vendored client imports on its own, without torch, from the plug-in folder
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import impasto.plugin.hostjob as h; "
        "print(h.__file__); print('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(target)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    where, torch_loaded = done.stdout.split()
    assert where.startswith(str(target)) and torch_loaded == "False"


def test_check_names_what_is_wrong(tmp_path):
    assert install_gimp.check(dest=tmp_path, python=PY) == [
        f"the GIMP plug-in is not installed in {tmp_path / 'impasto-style-transfer'}"
    ]
    target = install_gimp.install(dest=tmp_path, python=PY)
    main = target / "impasto-style-transfer.py"
    main.chmod(0o644)
    (target / "impasto_gimp_job.py").write_text("# an older version\n")
    (target / "impasto" / "plugin" / "hostjob.py").unlink()
    problems = install_gimp.check(dest=tmp_path, python=PY)
    assert any("not executable" in p for p in problems), problems
    assert any("impasto_gimp_job.py is outdated" in p for p in problems), problems
    assert any(p.endswith("hostjob.py") for p in problems), problems
    install_gimp.install(dest=tmp_path, python=PY)  # reinstalling repairs all of it
    assert install_gimp.check(dest=tmp_path, python=PY) == []


def test_unwritable_destination_is_a_readable_error(tmp_path):
    blocker = tmp_path / "plug-ins"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(ImpastoError, match="cannot install the GIMP plug-in into"):
        install_gimp.install(dest=blocker, python=PY)


def test_default_destination_is_the_users_gimp3_plugins_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert install_gimp.default_dest() == tmp_path / "GIMP" / "3.0" / "plug-ins"
    monkeypatch.setenv("IMPASTO_GIMP_PYTHON", "python3.13 -I")
    assert install_gimp.gimp_python(tmp_path) == ["python3.13", "-I"]


def test_missing_gimp_is_said_clearly_and_nothing_is_installed(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no gimp-console-3.x, no flatpak
    monkeypatch.delenv("IMPASTO_GIMP_PYTHON", raising=False)
    assert install_gimp.find() == []
    with pytest.raises(ImpastoError, match="GIMP 3 is not installed here"):
        install_gimp.install(dest=tmp_path / "plug-ins")
    assert not (tmp_path / "plug-ins").exists()
    problems = install_gimp.check(dest=tmp_path / "plug-ins")
    assert problems[0].startswith("GIMP 3 is not installed here (looked for gimp-console-3.2")
    assert "package-plugin gimp" in problems[0]


def test_cli_check_names_the_editor_it_found_or_its_absence(monkeypatch, tmp_path, capsys):
    from impasto.cli.main import main as cli_main

    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli_main(["install-plugin", "gimp", "--check", "--dest", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "GIMP 3 is not installed here" in out and "found " not in out
    assert cli_main(["install-plugin", "gimp", "--dest", str(tmp_path)]) != 0
    assert "GIMP 3 is not installed here" in capsys.readouterr().err


def test_gimp_32_gets_its_own_folder_and_python(monkeypatch, tmp_path):
    """A GIMP 3.2 on PATH: plug-ins go to GIMP/3.2, checked with the python3 having
    GIMP's bindings (here none has them, which the installer says)."""
    console = tmp_path / "bin" / "gimp-console-3.2"
    console.parent.mkdir()
    console.write_text("#!/bin/sh\n")
    console.chmod(0o755)
    monkeypatch.setenv("PATH", str(console.parent))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    found = install_gimp.find()
    assert [(f.kind, f.version) for f in found] == [("package", "3.2")]
    assert found[0].plugin_dir == tmp_path / "config" / "GIMP" / "3.2" / "plug-ins"
    assert install_gimp.default_dest(found[0]) == found[0].plugin_dir
    assert found[0].python is None  # Debian 12's python3 has no GIMP 3 bindings
    with pytest.raises(ImpastoError, match=r"gi\.repository\.Gimp"):
        install_gimp.install()
