"""libp2p PeerIDs for Ed25519 keys, so one key names a node on every transport.

An Ed25519 PeerID is the base58btc text of an *identity* multihash over the protobuf
``PublicKey{Type: Ed25519, Data: <32 bytes>}`` (libp2p spec, peer-ids.md); it therefore
embeds the public key and a receiver can verify a signature from the id alone.
"""

from __future__ import annotations

import functools

import base58

PeerId = str
"""A peer's libp2p id in its text form, e.g. ``12D3KooW...``."""

ED25519_KEY_BYTES = 32
# protobuf: field 1 (KeyType) varint = 1 (Ed25519), field 2 (Data) bytes of length 32
_PROTOBUF_PREFIX = bytes([0x08, 0x01, 0x12, ED25519_KEY_BYTES])
# multihash: code 0x00 (identity), length 36
_MULTIHASH_PREFIX = bytes([0x00, len(_PROTOBUF_PREFIX) + ED25519_KEY_BYTES])
_PREFIX = _MULTIHASH_PREFIX + _PROTOBUF_PREFIX


class InvalidPeerId(ValueError):
    """The text is not the PeerID of an Ed25519 key."""


@functools.lru_cache(maxsize=8192)
def peer_id_from_public_key(public_key: bytes) -> PeerId:
    """Return the PeerID of a raw 32-byte Ed25519 public key."""
    if len(public_key) != ED25519_KEY_BYTES:
        raise InvalidPeerId(f"an Ed25519 public key has 32 bytes, got {len(public_key)}")
    return base58.b58encode(_PREFIX + public_key).decode("ascii")


def public_key_from_peer_id(peer_id: PeerId) -> bytes:
    """Return the raw Ed25519 public key embedded in ``peer_id``."""
    try:
        raw = base58.b58decode(peer_id)
    except ValueError as exc:
        raise InvalidPeerId(f"{peer_id!r} is not base58: {exc}") from None
    if len(raw) != len(_PREFIX) + ED25519_KEY_BYTES or not raw.startswith(_PREFIX):
        raise InvalidPeerId(f"{peer_id!r} is not the PeerID of an Ed25519 key")
    return raw[len(_PREFIX) :]
