"""The node's Ed25519 identity: one key for envelope signatures and the libp2p host.

The key lives in ``<data_dir>/identity.key`` as PKCS#8 PEM with mode 0600, preceded by a
``peer-id:`` line (PEM allows text before the block). It is created on first use and only
ever loaded after that: a corrupt, altered or exposed key file is an error, never a reason to
silently become a different node. The recorded PeerID catches damage to the key bytes that
would still parse as some other valid key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeswarm.node.store import STORE_FILE, recorded_peer_id
from edgeswarm.protocols.peer_id import PeerId, peer_id_from_public_key

KEY_FILE = "identity.key"
_PEER_ID_LINE = b"peer-id: "


class IdentityError(Exception):
    """The key file cannot be used as this node's identity (the user must act)."""


class Identity:
    """An Ed25519 key pair and the PeerID it names."""

    __slots__ = ("_private", "peer_id", "public_key")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_key: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.peer_id: PeerId = peer_id_from_public_key(self.public_key)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Deterministic identity from a 32-byte seed (simulator nodes, tests)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        """The 32-byte private seed (what a libp2p Ed25519 key pair is built from)."""
        return self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def __repr__(self) -> str:
        return f"Identity({self.peer_id})"


def load_or_create(data_dir: Path) -> Identity:
    """Load the identity in ``data_dir``, creating it (and the directory, 0700) on first run.

    Raises
    ------
    IdentityError
        The key file is readable by others, unreadable, or not an Ed25519 PKCS#8 key; or
        it is gone from a directory whose store belongs to a node (that node's identity
        is not silently replaced by a new one).
    """
    path = data_dir / KEY_FILE
    if path.exists():
        return load(path)
    store = data_dir / STORE_FILE
    if store.exists():
        owner = recorded_peer_id(store) or "an earlier identity"
        raise IdentityError(
            f"key file '{path}' is missing, but the store beside it belongs to {owner}. Restore the key "
            f"file, or move '{store}' away to start as a new node"
        )
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = Identity.generate()
    pem = identity._private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, _PEER_ID_LINE + identity.peer_id.encode() + b"\n" + pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)  # atomic: a crash leaves either no key or a whole one
    return identity


def load(path: Path) -> Identity:
    """Load an existing key file, refusing one that others can read or that is damaged."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise IdentityError(
                f"key file '{path}' has mode {mode:04o}; others may read it. "
                f"Run: chmod 600 '{path}' (or move it away to create a new identity)"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read key file '{path}': {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise IdentityError(f"key file '{path}' is corrupt: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"key file '{path}' holds a {type(key).__name__}, not an Ed25519 key")
    identity = Identity(key)
    if data.startswith(_PEER_ID_LINE):
        recorded = data.split(b"\n", 1)[0][len(_PEER_ID_LINE) :].decode(errors="replace").strip()
        if recorded != identity.peer_id:
            raise IdentityError(
                f"key file '{path}' is corrupt: its key names {identity.peer_id}, but the file records {recorded}"
            )
    return identity
