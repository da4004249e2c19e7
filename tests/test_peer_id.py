import pytest

from edgeswarm.protocols.peer_id import InvalidPeerId, peer_id_from_public_key, public_key_from_peer_id

from conftest import identity


def test_peer_id_round_trips_the_public_key():
    ident = identity(1)
    assert ident.peer_id.startswith("12D3KooW") and len(ident.peer_id) == 52
    assert public_key_from_peer_id(ident.peer_id) == ident.public_key


def test_peer_id_is_the_one_py_libp2p_derives():
    libp2p_ed25519 = pytest.importorskip("libp2p.crypto.ed25519")
    from libp2p.peer.id import ID

    for n in range(5):
        ident = identity(n)
        key_pair = libp2p_ed25519.create_new_key_pair(ident.seed())
        assert key_pair.public_key.to_bytes() == ident.public_key
        assert ID.from_pubkey(key_pair.public_key).to_base58() == ident.peer_id


@pytest.mark.parametrize(
    "text",
    ["", "not base58 0OIl", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "12D3KooW" + "1" * 44],
)
def test_malformed_peer_ids_are_refused(text):
    with pytest.raises(InvalidPeerId):
        public_key_from_peer_id(text)


def test_public_key_must_have_32_bytes():
    with pytest.raises(InvalidPeerId):
        peer_id_from_public_key(b"\x01" * 31)
