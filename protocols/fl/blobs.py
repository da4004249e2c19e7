"""Large payloads moved in bounded chunks: offered to named peers, pulled and verified.

The sender keeps the bytes on a ``BlobShelf`` for the peers it named; the receiver pulls
``CHUNK_BYTES`` pieces and accepts the whole only if size and SHA-256 match what the
signed request promised. Nobody else can read a shelf, and it holds a bounded total.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.peer_id import PeerId

from .messages import CHUNK_BYTES, BlobRef, Chunk, ChunkRequest


class BlobError(Exception):
    """A blob could not be fetched or did not verify."""


class BlobShelf:
    """Blobs offered to given peers until they expire or the shelf needs the room."""

    def __init__(self, clock: Callable[[], float], max_bytes: int = 512 * 1024 * 1024, ttl: float = 3600.0) -> None:
        self._clock = clock
        self._max_bytes = max_bytes
        self._ttl = ttl
        self._blobs: OrderedDict[bytes, tuple[bytes, set[PeerId], float]] = OrderedDict()
        self._bytes = 0

    def offer(self, data: bytes, to: PeerId) -> BlobRef:
        digest = hashlib.sha256(data).digest()
        if len(data) > self._max_bytes:
            raise BlobError(f"blob of {len(data)} bytes exceeds the shelf's {self._max_bytes}")
        if digest in self._blobs:
            _, peers, _ = self._blobs.pop(digest)
            self._bytes -= len(data)
        else:
            peers = set()
        peers.add(to)
        self._blobs[digest] = (data, peers, self._clock() + self._ttl)
        self._bytes += len(data)
        while self._bytes > self._max_bytes:  # oldest offers go first
            _, (old, _, _) = self._blobs.popitem(last=False)
            self._bytes -= len(old)
        return BlobRef(digest, len(data))

    def chunk(self, peer: PeerId, request: ChunkRequest) -> bytes | None:
        """The requested piece, or None if unknown, expired, out of range or not for ``peer``."""
        entry = self._blobs.get(request.digest)
        if entry is None:
            return None
        data, peers, expires = entry
        if self._clock() > expires:
            del self._blobs[request.digest]
            self._bytes -= len(data)
            return None
        start = request.index * CHUNK_BYTES
        if peer not in peers or start >= max(len(data), 1):
            return None
        return data[start : start + CHUNK_BYTES]

    @property
    def stored_bytes(self) -> int:
        return self._bytes


async def fetch(messenger: Messenger, peer: PeerId, ref: BlobRef, *, max_bytes: int, timeout: float) -> bytes:
    """Pull ``ref`` from ``peer`` chunk by chunk and verify it; raises BlobError."""
    if ref.size > max_bytes:
        raise BlobError(f"blob of {ref.size} bytes is over this node's limit of {max_bytes}")
    parts, received = [], 0
    for index in range((ref.size + CHUNK_BYTES - 1) // CHUNK_BYTES):
        try:
            reply = await messenger.request(peer, ChunkRequest(ref.digest, index), Chunk, timeout=timeout)
        except Exception as exc:  # NetworkError or Rejected: either way the blob is lost
            raise BlobError(f"chunk {index} from {peer}: {exc}") from exc
        expected = min(CHUNK_BYTES, ref.size - received)
        if len(reply.data) != expected:
            raise BlobError(f"chunk {index} from {peer} has {len(reply.data)} bytes, expected {expected}")
        parts.append(reply.data)
        received += len(reply.data)
    data = b"".join(parts)
    if hashlib.sha256(data).digest() != ref.digest:
        raise BlobError(f"blob from {peer} does not match its SHA-256")
    return data
