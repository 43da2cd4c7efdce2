"""CURVE key files: creation, loading, the authorised list (real files, real zmq keys)."""

from __future__ import annotations

import stat

import pytest
import zmq

from impasto.shared import keys, paths


def test_create_and_load_a_key_pair_in_the_config_folder():
    public_file = keys.create_keypair("server")
    assert public_file == paths.keys_dir() / "server.key"
    secret_file = paths.keys_dir() / "server.key_secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    public, secret = keys.secret_keypair(secret_file)
    assert len(public) == 40 and len(secret) == 40
    assert zmq.curve_public(secret) == public
    assert keys.load_keypair(public_file) == (public, None)
    assert keys.server_keypair() == (public, secret)


def test_an_existing_pair_is_not_overwritten_without_force():
    first = keys.public_key(keys.create_keypair("client"))
    with pytest.raises(keys.KeyFileError, match="already exists"):
        keys.create_keypair("client")
    assert keys.public_key(keys.create_keypair("client", force=True)) != first


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "a b", "x" * 65])
def test_bad_key_names_are_refused(name):
    with pytest.raises(keys.KeyFileError, match="key name"):
        keys.create_keypair(name)


def test_server_keypair_is_created_on_demand_only_when_asked():
    with pytest.raises(keys.KeyFileError, match="does not exist"):
        keys.server_keypair()
    public, _ = keys.server_keypair(create=True)
    assert keys.server_keypair()[0] == public


def test_authorise_list_and_revoke_client_keys(tmp_path):
    assert keys.authorized_keys() == {}
    laptop = keys.public_key(keys.create_keypair("laptop", tmp_path))
    keys.authorize(tmp_path / "laptop.key", "laptop")
    studio_public, _ = zmq.curve_keypair()
    keys.authorize(studio_public.decode(), "studio")
    listed = keys.authorized_keys()
    assert listed == {"laptop": laptop, "studio": studio_public.decode()}
    assert keys.revoke("laptop") and not keys.revoke("laptop")
    assert list(keys.authorized_keys()) == ["studio"]


@pytest.mark.parametrize("bad", ["short", "x" * 40 + "y"])
def test_malformed_public_keys_are_refused(bad):
    with pytest.raises(keys.KeyFileError):
        keys.authorize(bad, "bad")


def test_client_keys_need_both_client_pair_and_server_public_key():
    assert keys.client_keys_or_none() is None
    keys.create_keypair("client")
    assert keys.client_keys_or_none() is None
    keys.create_keypair("server")
    pair = keys.client_keys_or_none()
    assert pair is not None
    public, secret, server = pair
    assert zmq.curve_public(secret) == public and len(server) == 40


def test_a_corrupt_key_file_names_the_file(tmp_path):
    bad = tmp_path / "x.key"
    bad.write_text("not a certificate")
    with pytest.raises(keys.KeyFileError, match=r"x\.key"):
        keys.load_keypair(bad)
