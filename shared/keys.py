"""CURVE key pairs for a daemon that serves other machines.

A daemon bound to a non-loopback address only talks CURVE: it has a server key pair, and
lets in the clients whose public keys sit in ``authorized_keys/`` (one ``NAME.key`` file
each). A client needs its own pair and the server's public key. Keys are ZeroMQ's Z85
text, stored in zmq.auth's certificate format; secret files are readable by the owner only.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import tempfile
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from impasto.shared import paths
from impasto.shared.errors import BAD_OPTIONS, ImpastoError

SERVER = "server"
CLIENT = "client"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
LOCAL_USER = "local"  # the PLAIN user name local clients prove themselves with
log = logging.getLogger("impasto.keys")


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
    # Made in a private scratch folder beside the target, then renamed into place (secret
    # first), so a reader never sees half a file and a crash leaves the old pair whole.
    with tempfile.TemporaryDirectory(dir=directory, prefix=".new-") as scratch:
        made_public, made_secret = zmq.auth.create_certificates(scratch, name)
        os.chmod(made_secret, 0o600)
        os.replace(made_secret, directory / f"{name}.key_secret")
        os.replace(made_public, public)
    return public


def write_atomically(target: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``target`` through a temporary file and a rename: all or nothing."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def secret_keypair(path: Path | str) -> tuple[bytes, bytes]:
    """(public, secret) from a .key_secret file; KeyFileError if it holds no secret."""
    public, secret = load_keypair(path)
    if secret is None:
        raise KeyFileError(f"{path} holds no secret key")
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
    return secret_keypair(secret_file)


def client_keys_or_none(directory: Path | None = None) -> tuple[bytes, bytes, bytes] | None:
    """(client public, client secret, server public) from keys_dir, None if incomplete.

    For a remote daemon, copy its ``server.key`` into this machine's keys folder.
    """
    directory = Path(directory or paths.keys_dir())
    client_secret = directory / f"{CLIENT}.key_secret"
    server_public = directory / f"{SERVER}.key"
    if not client_secret.exists() or not server_public.exists():
        return None
    public, secret = secret_keypair(client_secret)
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
        z85.decode(key)
    except Exception:
        raise KeyFileError("the public key is not valid Z85 text") from None
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name}.key"
    write_atomically(
        target,
        "#   ZeroMQ CURVE Public Certificate (authorised Impasto client)\n"
        f'metadata\ncurve\n    public-key = "{key.decode()}"\n',
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
    """Authorised clients: name -> Z85 public key.

    A file that is not a valid public key is logged and skipped: one bad file must never
    lock out the clients whose files are fine.
    """
    directory = Path(directory or paths.authorized_keys_dir())
    if not directory.is_dir():
        return {}
    out = {}
    for p in sorted(directory.glob("*.key")):
        try:
            public = load_keypair(p)[0]
            z85.decode(public)
            if len(public) != 40:
                raise KeyFileError(f"key file {p}: the public key is not 40 Z85 characters")
        except Exception as exc:
            log.warning("skipped authorised key file %s: %s", p, exc)
            continue
        out[p.stem] = public.decode()
    return out


# -- the local token: proves a client runs as the daemon's own user ---------------------
def local_token(create: bool = False) -> str | None:
    """The secret in the user-only runtime folder (None if absent and not ``create``).

    Whoever can read it is the daemon's user (or root): local clients send it as their
    ZeroMQ PLAIN password, so another account on the same machine gets nothing.
    """
    path = paths.token_file()
    try:
        text = path.read_text().strip()
        if len(text) >= 32:
            return text
    except OSError:
        pass
    if not create:
        return None
    paths.runtime_dir(create=True)
    try:  # O_EXCL: two daemons starting at once agree on one token
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip() or None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip()


def same_token(given: bytes | str, expected: str | None) -> bool:
    if not expected:
        return False
    given = given.encode() if isinstance(given, str) else given
    return hmac.compare_digest(given, expected.encode())
