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
from dataclasses import dataclass
from pathlib import Path

from impasto.plugin import binary_deps
from impasto.shared.errors import ImpastoError

RUNTIME_DEPS = ("pyzmq", "msgpack")  # distribution names; imported as zmq and msgpack
# The client side of the package: what an editor's Python needs, nothing that wants torch.
VENDORED_PLUGIN_MODULES = (
    "__init__.py",
    "binary_deps.py",
    "client.py",
    "daemonctl.py",
    "hostjob.py",
)
MANYLINUX_TAGS = ("manylinux_2_28", "manylinux_2_17", "manylinux2014", "manylinux1")
# pip takes this as "macOS 11 or older": pyzmq's universal2 wheels need 10.15, msgpack's 10.9.
MACOS_PLATFORM = "macosx_11_0_universal2"
VENDOR_MARKER = "IMPASTO_VENDORED.json"
# Left at the top of the vendor folder by installers before wheels went into tagged folders;
# they shadow the tagged copy with pyzmq's "source tree" error, so they are removed.
OLD_LAYOUT = ("zmq", "pyzmq.libs", "msgpack", "pyzmq-*.dist-info", "msgpack-*.dist-info")

# Runs in the editor's Python, which may not see our package (another root, no install):
# so binary_deps travels as source, and the probe asks exactly what the plug-in will do.
_PROBE_MAIN = """
import json
chosen = activate(sys.argv[1])
info = {"version": "%d.%d" % sys.version_info[:2], "tag": running_tags()[-1],
        "wheels": chosen, "missing": {}, "from": {}}
for mod in IMPORT_NAMES:
    try:
        info["from"][mod] = __import__(mod).__file__
    except Exception as exc:
        info["missing"][mod] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps(info))
"""


def _probe_code() -> str:
    return Path(binary_deps.__file__).read_text() + _PROBE_MAIN


@dataclass(frozen=True)
class Target:
    """The Python an editor runs, as far as binary wheels care: version, OS, machine."""

    version: str  # "3.14"
    os_name: str  # linux | windows | macos
    machine: str  # x86_64 | aarch64 | amd64 | universal2

    @property
    def tag(self) -> str:
        return binary_deps.tag_for(self.version, self.os_name, self.machine)

    @classmethod
    def from_tag(cls, tag: str) -> Target:
        abi, os_name, machine = tag.split("-", 2)
        return cls(f"{abi[2]}.{abi[3:]}", os_name, machine)

    def pip_platforms(self) -> list[str]:
        if self.os_name == "linux":
            return [f"{tag}_{self.machine}" for tag in MANYLINUX_TAGS]
        if self.os_name == "windows":
            return [f"win_{self.machine}"]
        if self.os_name == "macos":
            return [MACOS_PLATFORM.replace("universal2", self.machine)]
        raise ImpastoError(f"no wheels known for the platform {self.os_name!r}")

    def wheel_fits(self, wheel_name: str) -> bool:
        """Whether a wheel file's tags (name-ver-py-abi-plat.whl) suit this Python."""
        _, _, py, abi, plat = wheel_name[: -len(".whl")].rsplit("-", 4)
        cp = "cp" + self.version.replace(".", "")
        minor = int(self.version.split(".")[1])
        py_ok = cp in py.split(".") or (abi == "abi3" and int(py[3:] or 0) <= minor)
        platforms = plat.split(".")
        plat_ok = any(p.endswith(self.machine) for p in platforms) or plat == "any"
        os_ok = {"linux": "linux", "windows": "win", "macos": "macosx"}[self.os_name]
        return py_ok and plat_ok and any(os_ok in p for p in [*platforms, "any"])


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
    for pattern in OLD_LAYOUT:
        for old in dest_dir.glob(pattern):
            shutil.rmtree(old)
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
    for name in ("binary_deps.py", "client.py", "hostjob.py"):
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
    cmd = [*python, "-c", _probe_code(), _path_inside(python, dest_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImpastoError(f"cannot run the editor's Python {' '.join(python)}: {exc}") from None
    if proc.returncode != 0:
        raise ImpastoError(
            f"the editor's Python {' '.join(python)} failed: {proc.stderr.strip()[-500:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def download_wheels(target: Target, into: Path, wheelhouse: Path | None = None) -> list[Path]:
    """Fetch pyzmq and msgpack wheels for ``target`` (only from ``wheelhouse`` if given)."""
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps"]
    cmd += ["--python-version", target.version, "--implementation", "cp", "-d", str(into)]
    for tag in target.pip_platforms():
        cmd += ["--platform", tag]
    if wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run([*cmd, *RUNTIME_DEPS], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise ImpastoError(
            "could not download pyzmq and msgpack wheels for Python "
            f"{target.version} ({target.tag}): {proc.stderr.strip()[-800:]}"
        )
    return sorted(Path(into).glob("*.whl"))


def vendor_wheels(vendor_dir: Path, target: Target, wheelhouse: Path | None = None) -> Path:
    """Unpack pyzmq and msgpack for ``target`` into ``vendor_dir/wheels/<tag>``."""
    folder = Path(vendor_dir) / binary_deps.WHEELS_DIR / target.tag
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="impasto-wheels-") as tmp:
        for wheel in download_wheels(target, Path(tmp), wheelhouse):
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(folder)
    return folder


def ensure_runtime_deps(
    dest_dir: Path, python: list[str], wheelhouse: Path | None = None
) -> list[str]:
    """Make zmq and msgpack import in the host's Python with dest_dir on sys.path.

    Returns the problems left (empty = fine). The editor's own copies are used when
    they import; otherwise wheels for its exact Python go into a tagged folder, from
    PyPI or only from ``wheelhouse`` (a folder of .whl files) when one is given.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        info = probe_python(python, dest_dir)
        if not info["missing"]:
            return []
        vendor_wheels(dest_dir, Target.from_tag(info["tag"]), wheelhouse)
        info = probe_python(python, dest_dir)
    except ImpastoError as exc:
        return [exc.message]
    return _import_problems(info, python)


def provide_runtime_deps(
    dest_dir: Path, python: list[str] | None, target: Target | None, wheelhouse: Path | None
) -> list[str]:
    """With the editor's Python, as ``ensure_runtime_deps``; without one (a bundle we
    cannot run), wheels for ``target``. Returns the problems left."""
    if python:
        return ensure_runtime_deps(dest_dir, python, wheelhouse)
    assert target is not None, "installed_editors.wheels_plan gives a target when python is None"
    try:
        vendor_wheels(dest_dir, target, wheelhouse)
    except ImpastoError as exc:
        return [exc.message]
    return []


def check_runtime_deps(dest_dir: Path, python: list[str]) -> list[str]:
    """Problems only: whether zmq and msgpack import, without installing anything."""
    try:
        info = probe_python(python, dest_dir)
    except ImpastoError as exc:
        return [exc.message]
    return _import_problems(info, python)


def _import_problems(info: dict, python: list[str]) -> list[str]:
    return [
        f"{mod} does not import in {' '.join(python)} (Python {info['version']}): {why}"
        for mod, why in sorted(info["missing"].items())
    ]
