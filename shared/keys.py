"""CURVE key pairs for a daemon that serves other machines.

A daemon bound to a non-loopback address only talks CURVE: it has a server key pair, and
lets in the clients whose public keys sit in ``authorized_keys/`` (one ``NAME.key`` file
each). A client needs its own pair and the server's public key. Keys are ZeroMQ's Z85
text, stored in zmq.auth's certificate format; secret files are readable by the owner only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import zmq
import zmq.auth

from impasto.shared import paths
from impasto.shared.errors import BAD_OPTIONS, ImpastoError

SERVER = "server"
CLIENT = "client"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class KeyFileError(ImpastoError):
    """A key file that is missing or unreadable."""

    code = BAD_OPTIONS


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.startswith("."):
        raise KeyFileError(f"key name {name!r}: use letters, digits, '.', '_' or '-'")
    return name


def create_keypair(name: str, directory: Path | None = None, force: bool = False) -> Path:
    """Write NAME.key (public) and NAME.key_secret into ``directory`` (default keys_dir).

    Returns the public key file. Refuses to overwrite an existing pair unless ``force``.
    """
    directory = Path(directory or paths.keys_dir())
    _check_name(name)
    public = directory / f"{name}.key"
    if public.exists() and not force:
        raise KeyFileError(f"key pair '{name}' already exists in {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    public_file, secret_file = zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret_file, 0o600)
    return Path(public_file)


def load_keypair(path: Path | str) -> tuple[bytes, bytes | None]:
    """(public, secret) Z85 keys from a .key or .key_secret file (secret None if public)."""
    path = Path(path)
    if not path.exists():
        raise KeyFileError(f"key file {path} does not exist (create one with 'impasto keys')")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as exc:
        raise KeyFileError(f"key file {path} is not a ZeroMQ certificate: {exc}") from None
    return public, secret


def public_key(path: Path | str) -> str:
    """The Z85 public key in a key file, as text (what 'impasto keys show' prints)."""
    return load_keypair(path)[0].decode()


def server_keypair(directory: Path | None = None, create: bool = False) -> tuple[bytes, bytes]:
    """The daemon's (public, secret) pair; ``create`` makes it on first use."""
    directory = Path(directory or paths.keys_dir())
    secret_file = directory / f"{SERVER}.key_secret"
    if not secret_file.exists() and create:
        create_keypair(SERVER, directory)
    public, secret = load_keypair(secret_file)
    if secret is None:
        raise KeyFileError(f"{secret_file} holds no secret key")
    return public, secret


def client_keys_or_none(directory: Path | None = None) -> tuple[bytes, bytes, bytes] | None:
    """(client public, client secret, server public) from keys_dir, None if incomplete.

    For a remote daemon, copy its ``server.key`` into this machine's keys folder.
    """
    directory = Path(directory or paths.keys_dir())
    client_secret = directory / f"{CLIENT}.key_secret"
    server_public = directory / f"{SERVER}.key"
    if not client_secret.exists() or not server_public.exists():
        return None
    public, secret = load_keypair(client_secret)
    return public, secret, load_keypair(server_public)[0]


def authorize(public_key_or_file: str | Path, name: str, directory: Path | None = None) -> Path:
    """Add a client's public key (Z85 text or a .key file) to the authorised list."""
    directory = Path(directory or paths.authorized_keys_dir())
    _check_name(name)
    source = Path(str(public_key_or_file))
    if source.suffix == ".key" or source.exists():
        key = load_keypair(source)[0]
    else:
        key = str(public_key_or_file).encode()
    if len(key) != 40:
        raise KeyFileError(f"a CURVE public key is 40 Z85 characters, got {len(key)}")
    try:
        zmq.utils.z85.decode(key)
    except Exception:
        raise KeyFileError("the public key is not valid Z85 text") from None
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name}.key"
    target.write_text(
        "#   ZeroMQ CURVE Public Certificate (authorised Impasto client)\n"
        f'metadata\ncurve\n    public-key = "{key.decode()}"\n'
    )
    return target


def revoke(name: str, directory: Path | None = None) -> bool:
    """Remove an authorised client key; False if there was none by that name."""
    target = Path(directory or paths.authorized_keys_dir()) / f"{_check_name(name)}.key"
    if not target.exists():
        return False
    target.unlink()
    return True


def authorized_keys(directory: Path | None = None) -> dict[str, str]:
    """Authorised clients: name -> Z85 public key."""
    directory = Path(directory or paths.authorized_keys_dir())
    if not directory.is_dir():
        return {}
    return {p.stem: load_keypair(p)[0].decode() for p in sorted(directory.glob("*.key"))}
