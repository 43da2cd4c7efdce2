"""Make the client importable inside an editor's own Python.

Krita and GIMP run plug-ins in their own interpreter, which has neither our package
nor, maybe, pyzmq and msgpack. ``vendor_client`` copies the pure-Python client into the
plug-in's folder; ``ensure_runtime_deps`` checks that the editor's Python can import
zmq and msgpack from there and, when it cannot, unpacks matching wheels from PyPI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from impasto.shared.errors import ImpastoError

RUNTIME_DEPS = ("pyzmq", "msgpack")  # distribution names; imported as zmq and msgpack
# The client side of the package: what an editor's Python needs, nothing that wants torch.
VENDORED_PLUGIN_MODULES = ("__init__.py", "client.py", "daemonctl.py", "hostjob.py")
MANYLINUX_TAGS = ("manylinux_2_28", "manylinux_2_17", "manylinux2014", "manylinux1")
VENDOR_MARKER = "IMPASTO_VENDORED.json"

_PROBE = (
    "import json, sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "info = {'version': '%d.%d' % sys.version_info[:2], 'abi': sys.implementation.cache_tag,\n"
    "        'platform': __import__('sysconfig').get_platform(), 'missing': {}}\n"
    "for mod in ('zmq', 'msgpack'):\n"
    "    try:\n"
    "        __import__(mod)\n"
    "    except Exception as exc:\n"
    "        info['missing'][mod] = '%s: %s' % (type(exc).__name__, exc)\n"
    "print(json.dumps(info))\n"
)


def _source_dirs() -> tuple[Path, Path]:
    """The installed (or editable) impasto.shared and impasto.plugin folders."""
    import impasto.plugin
    import impasto.shared

    return Path(impasto.shared.__file__).parent, Path(impasto.plugin.__file__).parent


def vendor_client(dest_dir: Path) -> None:
    """Copy impasto.shared and the client modules of impasto.plugin into dest_dir/impasto."""
    dest_dir = Path(dest_dir)
    shared_src, plugin_src = _source_dirs()
    root = dest_dir / "impasto"
    for sub in ("shared", "plugin"):
        if (root / sub).exists():
            shutil.rmtree(root / sub)
    (root / "shared").mkdir(parents=True, exist_ok=True)
    (root / "plugin").mkdir(parents=True, exist_ok=True)
    (root / "__init__.py").write_text(
        '"""Impasto client, vendored into an editor plug-in by impasto.plugin.vendor."""\n'
    )
    for path in sorted(shared_src.glob("*.py")):
        shutil.copy2(path, root / "shared" / path.name)
    copied = []
    for name in VENDORED_PLUGIN_MODULES:
        if (plugin_src / name).exists():
            shutil.copy2(plugin_src / name, root / "plugin" / name)
            copied.append(name)
    if "client.py" not in copied:
        raise ImpastoError(f"the Impasto client (client.py) is missing from {plugin_src}")
    (dest_dir / VENDOR_MARKER).write_text(
        json.dumps({"source": str(plugin_src.parent), "plugin_modules": copied}, indent=1)
    )


def check_vendored(dest_dir: Path) -> list[str]:
    """Problems with a vendored client in dest_dir (empty = complete)."""
    root = Path(dest_dir) / "impasto"
    problems = []
    shared_src, _ = _source_dirs()
    for path in sorted(shared_src.glob("*.py")):
        if not (root / "shared" / path.name).is_file():
            problems.append(f"missing {root / 'shared' / path.name}")
    for name in ("client.py", "hostjob.py"):
        if not (root / "plugin" / name).is_file():
            problems.append(f"missing {root / 'plugin' / name}")
    return problems


def _path_inside(python: list[str], path: Path) -> str:
    """The path as the host's Python sees it (["chroot", ROOT, ...] sees ROOT as /)."""
    path = Path(path).resolve()
    if len(python) >= 2 and Path(python[0]).name == "chroot":
        root = Path(python[1]).resolve()
        try:
            return "/" + str(path.relative_to(root))
        except ValueError:
            raise ImpastoError(f"{path} is outside the chroot {root}") from None
    return str(path)


def probe_python(python: list[str], dest_dir: Path) -> dict:
    """Ask the host's Python for its version, platform and which deps fail to import."""
    cmd = [*python, "-c", _PROBE, _path_inside(python, dest_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImpastoError(f"cannot run the editor's Python {' '.join(python)}: {exc}") from None
    if proc.returncode != 0:
        raise ImpastoError(
            f"the editor's Python {' '.join(python)} failed: {proc.stderr.strip()[-500:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _platform_tags(platform: str) -> list[str]:
    """pip --platform values for a sysconfig platform such as linux-x86_64."""
    if platform.startswith("linux-"):
        arch = platform.split("-", 1)[1]
        return [f"{tag}_{arch}" for tag in MANYLINUX_TAGS]
    return [platform.replace("-", "_").replace(".", "_")]


def download_wheels(info: dict, into: Path, wheelhouse: Path | None = None) -> list[Path]:
    """Fetch pyzmq and msgpack wheels for the probed Python (from a local wheelhouse if given)."""
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps"]
    cmd += ["--python-version", info["version"], "--implementation", "cp", "-d", str(into)]
    cmd += ["--abi", info["abi"].replace("cpython-", "cp")]
    for tag in _platform_tags(info["platform"]):
        cmd += ["--platform", tag]
    if wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run([*cmd, *RUNTIME_DEPS], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise ImpastoError(
            "could not download pyzmq and msgpack wheels for Python "
            f"{info['version']} ({info['platform']}): {proc.stderr.strip()[-800:]}"
        )
    return sorted(Path(into).glob("*.whl"))


def ensure_runtime_deps(
    dest_dir: Path, python: list[str], wheelhouse: Path | None = None
) -> list[str]:
    """Make zmq and msgpack import in the host's Python with dest_dir on sys.path.

    Returns the problems left (empty = fine). Wheels come from PyPI, or only from
    ``wheelhouse`` (a folder of .whl files) when one is given.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        info = probe_python(python, dest_dir)
        if not info["missing"]:
            return []
        with tempfile.TemporaryDirectory(prefix="impasto-wheels-") as tmp:
            for wheel in download_wheels(info, Path(tmp), wheelhouse):
                with zipfile.ZipFile(wheel) as archive:
                    archive.extractall(dest_dir)
        info = probe_python(python, dest_dir)
    except ImpastoError as exc:
        return [exc.message]
    return _import_problems(info, python)


def check_runtime_deps(dest_dir: Path, python: list[str]) -> list[str]:
    """Problems only: whether zmq and msgpack import, without installing anything."""
    try:
        info = probe_python(python, dest_dir)
    except ImpastoError as exc:
        return [exc.message]
    return _import_problems(info, python)


def _import_problems(info: dict, python: list[str]) -> list[str]:
    return [
        f"{mod} does not import in {' '.join(python)}: {why}"
        for mod, why in sorted(info["missing"].items())
    ]
