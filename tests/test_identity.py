import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from typer.testing import CliRunner

from edgeswarm.node.cli import app
from edgeswarm.node.identity import KEY_FILE, IdentityError, load_or_create


def test_first_run_creates_a_private_key_and_later_runs_load_it(tmp_path):
    data_dir = tmp_path / "node"
    first = load_or_create(data_dir)
    key = data_dir / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert load_or_create(data_dir).peer_id == first.peer_id
    assert not list(data_dir.glob("*.tmp"))


def test_world_readable_key_is_refused_not_replaced(tmp_path):
    ident = load_or_create(tmp_path)
    key = tmp_path / KEY_FILE
    before = key.read_bytes()
    os.chmod(key, 0o644)
    with pytest.raises(IdentityError, match="mode 0644"):
        load_or_create(tmp_path)
    assert key.read_bytes() == before
    os.chmod(key, 0o600)
    assert load_or_create(tmp_path).peer_id == ident.peer_id


@pytest.mark.parametrize("damage", [b"", b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"])
def test_corrupt_key_is_refused(tmp_path, damage):
    load_or_create(tmp_path)
    key = tmp_path / KEY_FILE
    key.write_bytes(damage)
    with pytest.raises(IdentityError, match="corrupt"):
        load_or_create(tmp_path)
    assert key.read_bytes() == damage


@pytest.mark.parametrize("offset", [4, 30])  # in the DER header, in the private seed
def test_tampered_key_bytes_are_refused(tmp_path, offset):
    load_or_create(tmp_path)
    key = tmp_path / KEY_FILE
    data = bytearray(key.read_bytes())
    body = data.index(b"KEY-----\n") + len(b"KEY-----\n")
    data[body + offset] = ord("A") if data[body + offset] != ord("A") else ord("B")
    key.write_bytes(bytes(data))
    with pytest.raises(IdentityError, match="corrupt"):
        load_or_create(tmp_path)


def test_a_key_of_another_type_is_refused(tmp_path):
    key = generate_private_key(SECP256R1())
    path = tmp_path / KEY_FILE
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="not an Ed25519 key"):
        load_or_create(tmp_path)


def test_cli_id_show_is_stable_and_refuses_a_tampered_key(tmp_path):
    runner = CliRunner()
    first = runner.invoke(app, ["id", "show", "--data-dir", str(tmp_path)])
    second = runner.invoke(app, ["id", "show", "--data-dir", str(tmp_path)])
    assert first.exit_code == 0 and second.exit_code == 0
    assert first.stdout.strip() == second.stdout.strip()
    assert first.stdout.startswith("12D3KooW")
    (tmp_path / KEY_FILE).write_bytes(b"oops")
    bad = runner.invoke(app, ["id", "show", "--data-dir", str(tmp_path)])
    assert bad.exit_code == 4
    assert "corrupt" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
