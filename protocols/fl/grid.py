"""A ``flwr.serverapp.Grid`` whose messages travel over the swarm's ``Network``.

Any Message-API strategy's ``configure_*``/``aggregate_*`` run on it unchanged; the host's
round loop (``node.fl_host``) runs an ``Exchange`` of instructions between them. Flower's own
``Strategy.start`` is not used: it blocks a thread on wall-clock time, which a virtual-time
simulator cannot drive, and it would hand replies to the strategy before the host checks
them. A reply that does not arrive in time, or a send that fails, comes back as an error
reply, so strategies count it as a failure and a round never hangs.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable, Iterable

import trio
from flwr.app import Error, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from edgeswarm.protocols.blobs import BlobError
from edgeswarm.protocols.envelope import Rejected
from edgeswarm.protocols.network import NetworkError
from edgeswarm.protocols.peer_id import PeerId

from . import flower_wire

SEND_FAILED = 1  # Error codes of the replies this grid makes up
DEADLINE_MISSED = 2
REFUSED = 3  # the host refused what the participant sent before decoding it (``SwarmGrid.refuse``)


def flower_node_id(peer: PeerId) -> int:
    """A peer's Flower node id."""
    return flower_wire.flower_id(str(peer))


class SwarmGrid(Grid):
    """Grid over a set of joined peers.

    Parameters
    ----------
    run_id : int
    host_node_id : int
        The Flower node id of the hosting node (source of instructions).
    send : async (peer, encoded message) -> None
        Delivers one instruction; raises NetworkError, Rejected, BlobError or ValueError
        when it cannot.
    """

    def __init__(self, run_id: int, host_node_id: int, send: Callable[[PeerId, bytes], Awaitable[None]]) -> None:
        flower_wire.ensure_task_identity()
        self._run = Run.create_empty(run_id)
        self._host = host_node_id
        self._send = send
        self._peers: dict[int, PeerId] = {}
        # message id -> (the node it went to, where its reply goes: the Message, or why it was refused)
        self._waiting: dict[str, tuple[int, trio.MemorySendChannel[Message | str]]] = {}
        self._ids = itertools.count(1)
        self._trio_token: trio.lowlevel.TrioToken | None = None

    # participants
    def add_peer(self, peer: PeerId) -> int:
        node_id = flower_node_id(peer)
        self._peers[node_id] = peer
        return node_id

    def peer_of(self, node_id: int) -> PeerId | None:
        return self._peers.get(node_id)

    def drop_peer(self, node_id: int) -> PeerId | None:
        """Take a participant out of the run (no more instructions); returns who it was."""
        return self._peers.pop(node_id, None)

    # flwr.serverapp.Grid
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content=content, message_type=message_type, dst_node_id=dst_node_id, group_id=group_id, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return sorted(self._peers)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("SwarmGrid sends and collects in one step: use send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("SwarmGrid sends and collects in one step: use send_and_receive")

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        raise NotImplementedError("SwarmGrid is driven by the host's trio round loop: use exchange()")

    # the swarm side
    def exchange(self, messages: Iterable[Message]) -> Exchange:
        """Stamp ``messages`` as this run's and return them as one exchange to ``run``."""
        outgoing = list(messages)
        for message in outgoing:
            flower_wire.stamp(
                message,
                run_id=self._run.run_id,
                message_id=f"{self._run.run_id}-{next(self._ids)}",
                src_node_id=self._host,
            )
        return Exchange(self, outgoing)

    def deliver(self, peer: PeerId, reply: Message) -> str:
        """Hand a participant's reply to the waiting round; returns why it was refused, or ''."""
        meta = reply.metadata
        waiting = self._waiting.get(meta.reply_to_message_id)
        if waiting is None:
            return "not awaiting a reply to that message"
        if self._peers.get(meta.src_node_id) != peer or waiting[0] != meta.src_node_id:
            return "reply claims another node id"
        if meta.run_id != self._run.run_id:
            return "reply for another run"
        try:
            waiting[1].send_nowait(reply)
        except trio.WouldBlock:
            return "already answered"
        return ""

    def refuse(self, peer: PeerId, reason: str) -> None:
        """What ``peer`` sent was refused before it could be read: answer its outstanding
        instructions with that at once (a rejection, not a missed deadline)."""
        node_id = flower_node_id(peer)
        for waiting_for, reply in list(self._waiting.values()):
            if waiting_for == node_id:
                with contextlib.suppress(trio.WouldBlock):
                    reply.send_nowait(reason[:300])


class Exchange:
    """One batch of instructions and the replies that came back for them.

    ``run`` sends them all and waits for every reply; the caller bounds it with a cancel
    scope (``with trio.move_on_after(reply_timeout): await exchange.run()``), then reads
    ``replies``, where a send that failed or a reply that never came is an error reply.
    """

    def __init__(self, grid: SwarmGrid, messages: list[Message]) -> None:
        self._grid = grid
        self.messages = messages
        self.encoded = [flower_wire.encode(m) for m in messages]
        """The bytes each instruction goes out as (what its reply may be sized against)."""
        self._replies: dict[str, Message] = {}

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for message, data in zip(self.messages, self.encoded, strict=True):
                nursery.start_soon(self._one, message, data)

    def replies(self) -> list[Message]:
        """A reply per message, in message order (error replies for the missing ones)."""
        return [
            self._replies.get(m.metadata.message_id) or _error(m, DEADLINE_MISSED, "no reply before the deadline")
            for m in self.messages
        ]

    def missed(self) -> list[int]:
        """The participants that took an instruction and did not answer it in time (node ids).

        One that could not be reached is not among them: that failed fast, costing no wait.
        """
        return [m.metadata.dst_node_id for m in self.messages if m.metadata.message_id not in self._replies]

    async def _one(self, message: Message, data: bytes) -> None:
        grid, message_id = self._grid, message.metadata.message_id
        peer = grid.peer_of(message.metadata.dst_node_id)
        if peer is None:
            self._replies[message_id] = _error(message, SEND_FAILED, "not a participant of this run")
            return
        send_reply, receive_reply = trio.open_memory_channel[Message | str](1)
        grid._waiting[message_id] = (message.metadata.dst_node_id, send_reply)
        try:
            await grid._send(peer, data)
            reply = await receive_reply.receive()
            self._replies[message_id] = reply if isinstance(reply, Message) else _error(message, REFUSED, reply)
        except (NetworkError, Rejected, BlobError, ValueError) as exc:  # unreachable, refused, too big: a failure
            self._replies[message_id] = _error(message, SEND_FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            grid._waiting.pop(message_id, None)


def _error(message: Message, code: int, reason: str) -> Message:
    return Message(Error(code=code, reason=reason), reply_to=message)
