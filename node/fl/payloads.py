"""How a Flower message travels between host and client: inline, or as a blob fetched in chunks.

A ``Task`` (host -> client) or ``Result`` (client -> host) carries the message's bytes
itself up to ``INLINE_BYTES``; a larger one is offered on this node's ``BlobShelf`` to that
one peer, who fetches it by hash. The offer goes once that peer has it all, or when the
sender ``release``s what it offered for the run (the host, as each round's exchange ends):
a host holds at most the payloads of the round in flight. Both directions are bounded by
``max_payload_mb``.
"""

from __future__ import annotations

from edgeswarm.protocols.blobs import BlobRef, BlobShelf, fetch
from edgeswarm.protocols.fl.messages import INLINE_BYTES, Ack, Result, Task
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import RequestRefused, deadline
from edgeswarm.protocols.peer_id import PeerId


class Payloads:
    """Send and receive Flower message bytes for one node."""

    def __init__(self, messenger: Messenger, shelf: BlobShelf, *, max_bytes: int, timeout: float) -> None:
        self.messenger = messenger
        self.shelf = shelf
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._offered: dict[str, list[tuple[bytes, PeerId]]] = {}  # run -> what we put on the shelf for it

    async def send(self, peer: PeerId, kind: type[Task | Result], run_id: str, data: bytes) -> None:
        """Send ``data`` inline or as a blob offered to ``peer``; raise if it is refused."""
        if len(data) > self.max_bytes:
            raise ValueError(f"message of {len(data)} bytes is over the {self.max_bytes}-byte limit")
        if len(data) <= INLINE_BYTES:
            body = kind(run_id, inline=data)
        else:
            ref = self.shelf.offer(data, peer)
            self._offered.setdefault(run_id, []).append((ref.digest, peer))
            body = kind(run_id, blob=ref)
        with deadline(self.timeout):
            ack = await self.messenger.request(peer, body, Ack)
        if not ack.accepted:
            raise RequestRefused(f"{kind.KIND} refused: {ack.reason}")

    def release(self, run_id: str) -> None:
        """Withdraw what is still offered for run ``run_id`` (its round is over)."""
        for digest, peer in self._offered.pop(run_id, []):
            self.shelf.withdraw(digest, peer)

    async def receive(self, peer: PeerId, message: Task | Result) -> bytes:
        """The bytes a Task or Result carries, fetching its blob from ``peer`` if it has one."""
        inline, blob = message.inline, message.blob
        if inline is not None and blob is None:
            return inline
        if blob is not None and inline is None:
            return await self._fetch(peer, blob)
        raise ValueError(f"a {message.KIND} carries either inline bytes or a blob")

    async def _fetch(self, peer: PeerId, ref: BlobRef) -> bytes:
        return await fetch(self.messenger, peer, ref, max_bytes=self.max_bytes, chunk_timeout=self.timeout)
