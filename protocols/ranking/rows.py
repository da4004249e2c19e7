"""Signing and verifying click-log rows: only the node that clicked can write its rows.

A relaying peer passes rows on byte for byte; whoever receives them checks the signature
against the key inside the row's own ``node`` PeerID, so an altered or forged row is refused
however many hops it took.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

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


def decode_row(signed: SignedRow) -> ClickRow:
    """The row's fields, not yet verified (enough to tell a duplicate); ``Rejected`` if malformed."""
    try:
        return _decoder.decode(signed.row)
    except (msgspec.DecodeError, ValueError) as exc:
        raise Rejected(RejectReason.MALFORMED, f"click row: {exc}") from None


def verify_row(signed: SignedRow, row: ClickRow) -> None:
    """``Rejected`` unless ``row`` (decoded from ``signed``) is signed by its own node."""
    if not _valid(row.node, signed.row, signed.sig):
        raise Rejected(RejectReason.BAD_SIGNATURE, f"click row {row.number} of {row.node}")


def open_row(signed: SignedRow) -> ClickRow:
    """The verified row; ``Rejected`` if it is malformed or not signed by its own node."""
    row = decode_row(signed)
    if not _valid(row.node, signed.row, signed.sig):
        raise Rejected(RejectReason.BAD_SIGNATURE, f"click row {row.number} of {row.node}")
    return row


_CHECKED_MAX = 65536
_checked: OrderedDict[bytes, bool] = OrderedDict()  # hash of (node, sig, row) -> verdict, oldest first


def _valid(node: str, data: bytes, sig: bytes) -> bool:
    """Ed25519 check of ``sig`` over ``data`` by ``node``'s key.

    Memoised: a row travels to every node, and where many nodes share a process (the
    simulator) each distinct row is checked once instead of once per node. The memo holds a
    16-byte hash of what was checked, never the row itself, so a flood of large rows cannot
    pin their bytes in memory (it held up to 65,536 rows of 4 KB).
    """
    digest = hashlib.blake2b(sig + data, digest_size=16).digest()  # data names the node, so this covers all three
    verdict = _checked.get(digest)
    if verdict is None:
        verdict = _checked[digest] = _check(node, data, sig)
        if len(_checked) > _CHECKED_MAX:
            _checked.popitem(last=False)
    return verdict


def _check(node: str, data: bytes, sig: bytes) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key_from_peer_id(node))
        key.verify(sig, _DOMAIN + data)
    except (InvalidSignature, InvalidPeerId, ValueError):
        return False
    return True
