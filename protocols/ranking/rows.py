"""Signing and verifying click-log rows: only the node that clicked can write its rows.

A relaying peer passes rows on byte for byte; whoever receives them checks the signature
against the key inside the row's own ``node`` PeerID, so an altered or forged row is refused
however many hops it took.
"""

from __future__ import annotations

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..envelope import Rejected, RejectReason, Signer
from ..peer_id import InvalidPeerId, peer_id_from_public_key, public_key_from_peer_id
from .messages import MAX_ROW_BYTES, ClickRow, SignedRow

_DOMAIN = b"edgeswarm/click-row/v1\x00"
_decoder = msgspec.msgpack.Decoder(ClickRow)


def sign_row(signer: Signer, row: ClickRow) -> SignedRow:
    """Sign ``row``, which must be ``signer``'s own."""
    if row.node != peer_id_from_public_key(signer.public_key):
        raise ValueError("a node signs only its own click rows")
    data = msgspec.msgpack.encode(row)
    if len(data) > MAX_ROW_BYTES:
        raise ValueError(f"click row of {len(data)} bytes exceeds {MAX_ROW_BYTES}")
    return SignedRow(data, signer.sign(_DOMAIN + data))


def open_row(signed: SignedRow) -> ClickRow:
    """The verified row; ``Rejected`` if it is malformed or not signed by its own node."""
    try:
        row = _decoder.decode(signed.row)
    except (msgspec.DecodeError, ValueError) as exc:
        raise Rejected(RejectReason.MALFORMED, f"click row: {exc}") from None
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key_from_peer_id(row.node))
        key.verify(signed.sig, _DOMAIN + signed.row)
    except (InvalidSignature, InvalidPeerId, ValueError):
        raise Rejected(RejectReason.BAD_SIGNATURE, f"click row {row.number} of {row.node}") from None
    return row
