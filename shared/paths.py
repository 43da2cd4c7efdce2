"""Where Impasto keeps its files, and which endpoint a daemon serves by default.

State (lock, pid and log files) follows ``XDG_STATE_HOME``, configuration (CURVE keys)
follows ``XDG_CONFIG_HOME``, so tests and several users on one machine never collide.
Every daemon's files are named after its endpoint: two daemons on two ports coexist.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

# The default port: unassigned in the IANA registry and outside the Linux ephemeral range
# (32768-60999), so a client's own outgoing ports never take it.
DEFAULT_PORT = 5755
DEFAULT_HOST = "127.0.0.1"
DEFAULT_ENDPOINT = f"tcp://{DEFAULT_HOST}:{DEFAULT_PORT}"
ENDPOINT_ENV = "IMPASTO_ENDPOINT"  # overrides the default endpoint for every client

APP = "impasto"


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~")
        return Path(base)
    return Path.home() / fallback


def state_dir() -> Path:
    """$XDG_STATE_HOME/impasto: lock, pid and log files."""
    return _xdg("XDG_STATE_HOME", ".local/state") / APP


def config_dir() -> Path:
    """$XDG_CONFIG_HOME/impasto: settings and CURVE keys."""
    return _xdg("XDG_CONFIG_HOME", ".config") / APP


def keys_dir() -> Path:
    """Key pairs of this machine (server.key / client.key and their secrets)."""
    return config_dir() / "keys"


def authorized_keys_dir() -> Path:
    """Public keys of the clients a CURVE daemon lets in: one ``*.key`` file each."""
    return config_dir() / "authorized_keys"


def runtime_dir(create: bool = False) -> Path:
    """A user-only folder for the local token: $XDG_RUNTIME_DIR/impasto, else
    /tmp/impasto-UID (``IMPASTO_RUNTIME_DIR`` overrides both, e.g. for a chroot).

    Shared by every process of the user whatever its other XDG folders, so a client finds
    the token of a daemon started with other state folders. A folder that is not ours or
    is readable by others is refused (someone else could have planted it).
    """
    override = os.environ.get("IMPASTO_RUNTIME_DIR")
    base = os.environ.get("XDG_RUNTIME_DIR")
    if override and os.path.isabs(override):
        path = Path(override)
    elif base and os.path.isabs(base):
        path = Path(base) / APP
    else:
        uid = os.getuid() if hasattr(os, "getuid") else 0
        path = Path("/tmp") / f"{APP}-{uid}"
    if create:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists() and hasattr(os, "getuid"):
        st = path.lstat()
        if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid():
            raise PermissionError(f"{path} is not a folder owned by this user")
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)
    return path


def token_file() -> Path:
    """The local clients' secret (see shared.keys.local_token)."""
    return runtime_dir() / "token"


def weights_dir() -> Path:
    """$XDG_DATA_HOME/impasto/weights: the extra .pth files a daemon offers by name."""
    return _xdg("XDG_DATA_HOME", ".local/share") / APP / "weights"


def journal_file(endpoint: str) -> Path:
    """The daemon's crash-safe job journal (sqlite3, WAL mode)."""
    return state_dir() / f"jobs-{endpoint_slug(endpoint)}.sqlite3"


def default_endpoint() -> str:
    """$IMPASTO_ENDPOINT, else tcp://127.0.0.1:5755."""
    return os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT


def endpoint_slug(endpoint: str) -> str:
    """A file-name-safe form of an endpoint: tcp://127.0.0.1:5755 -> tcp-127.0.0.1-5755."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", endpoint).strip("-")
    return slug[:120] or "default"


def lock_file(endpoint: str) -> Path:
    """Held (flock) by the daemon serving ``endpoint``; holds its pid."""
    return state_dir() / f"daemon-{endpoint_slug(endpoint)}.lock"


def read_pid(path: Path) -> int | None:
    """The pid written on the first line of a lock file, or None."""
    try:
        first = Path(path).read_text().split("\n", 1)[0].strip()
        return int(first) if first else None
    except (OSError, ValueError):
        return None


def log_file(endpoint: str) -> Path:
    return state_dir() / f"daemon-{endpoint_slug(endpoint)}.log"


def is_loopback(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if ";" in host:  # tcp://source;dest form: the bind address is after the ';'
        host = host.split(";")[-1]
    return host == "localhost" or host == "::1" or host.startswith("127.")


def is_wildcard(endpoint: str) -> bool:
    """True for tcp://0.0.0.0, tcp://[::] and tcp://*: every interface of this machine,
    so a daemon for it starts here (it is not loopback: CURVE applies)."""
    scheme, _, rest = endpoint.partition("://")
    host = rest.rsplit(":", 1)[0].strip("[]")
    return scheme == "tcp" and host in ("0.0.0.0", "::", "*")


def check_endpoint(endpoint: str) -> str:
    """Raise ValueError naming the problem unless ``endpoint`` looks like tcp://host:port."""
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise ValueError(f"endpoint {endpoint!r} must look like tcp://127.0.0.1:{DEFAULT_PORT}")
    scheme, _, rest = endpoint.partition("://")
    if scheme not in ("tcp", "ipc"):
        raise ValueError(f"endpoint {endpoint!r}: transport must be tcp:// or ipc://")
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"endpoint {endpoint!r} needs a host and a port 1..65535")
    return endpoint
