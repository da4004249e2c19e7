"""The click log's gossip: the trio driver of ``click_log.ClickLog`` over the messenger.

After each of our clicks, and in the background every ``anti_entropy_interval`` seconds
(jittered; backing off while rounds bring nothing new), the node asks one random peer it
has met (view, known or connected peers, never an issuer it only read of) for click-log
rows: by default with a digest of what it holds, so the peer sends only rows it lacks
(``gossip = "digest"``); or the paper's pull, where the serving side keeps a progress
pointer per requester (``"pull"``); or it pushes (``"push"``, the only mode that accepts
pushed rows). Every decision about the rows is the click log's; this module owns the
requests, the timer, the deadlines, and the checkpoints between chunks of a batch.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

import trio

from edgeswarm.node.config import RankingConfig
from edgeswarm.node.ranking.click_log import ClickLog
from edgeswarm.protocols.envelope import Rejected
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import NetworkError, RequestRefused, deadline
from edgeswarm.protocols.peer_id import PeerId
from edgeswarm.protocols.ranking.messages import (
    MAX_ROW_BYTES,
    PullReply,
    PullRequest,
    PushAck,
    PushRows,
    SignedRow,
)

_CHUNK = 64  # rows checked and committed (or issuers evicted) between two checkpoints
_ROW_OVERHEAD = 128  # a row's signature and framing in a push, at most


class _NoRoom(Exception):
    """The row budget ("peer_rate" or "total_rate", the message) has no room for a batch now."""


class ClickLogGossip:
    """Pulls, pushes and serves click-log rows for one node.

    Parameters
    ----------
    messenger : Messenger
    log : ClickLog
    config : RankingConfig
    rng : random.Random
        Picks the peer of each round (shared with the search's exploration, one stream).
    peers : callable
        Candidate peers to pull from (the view and recently met peers).
    met : callable
        Every peer met directly; their rows are evicted last.
    clock : callable
        Time for the admission rates (the simulator's virtual time).
    """

    def __init__(
        self,
        messenger: Messenger,
        log: ClickLog,
        config: RankingConfig,
        rng: random.Random,
        peers: Callable[[], list[PeerId]],
        met: Callable[[], Iterable[PeerId]],
        clock: Callable[[], float],
    ) -> None:
        self._messenger = messenger
        self.log = log
        self._config = config
        self._rng = rng
        self._peers = peers
        self._met = met
        self._clock = clock
        self.me = messenger.local_peer
        self._intake = trio.Lock()  # see ``receive``
        self._interval = config.anti_entropy_interval
        # its own stream of jitter, so background rounds do not shift the search's randomness
        self._jitter = random.Random(f"anti-entropy {self.me}")
        messenger.register(PullRequest, PullReply, PushRows, PushAck)
        messenger.on_request(PullRequest, self._on_pull)
        messenger.on_request(PushRows, self._on_push, admit=self._admit_push)

    async def after_click(self) -> int:
        """Our user is active again: back to the short interval, and a round now."""
        self._interval = self._config.anti_entropy_interval
        return await self.round()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background anti-entropy: a gossip round every interval, clicks or not.

        The interval is jittered x U(0.75, 1.25); it doubles (up to
        ``anti_entropy_max_interval``) after each round that brought nothing new.
        """
        if self._config.anti_entropy_interval <= 0:
            raise ValueError("anti-entropy is off (anti_entropy_interval = 0): nothing to run")
        task_status.started()
        counters = self._messenger.counters
        while True:
            await trio.sleep(self._interval * self._jitter.uniform(0.75, 1.25))
            taken = await self.round()
            counters.add("ranking", "anti_entropy_rounds")
            if taken:
                self._interval = self._config.anti_entropy_interval
            else:
                counters.add("ranking", "anti_entropy_idle")
                self._interval = min(2 * self._interval, self._config.anti_entropy_max_interval)

    async def round(self) -> int:
        """One gossip round in the configured mode; rows taken (or, pushing, taken by the peer)."""
        return await (self.push_once() if self._config.gossip == "push" else self.pull_once())

    # -- gossip ----------------------------------------------------------------------------
    def _random_peer(self) -> PeerId | None:
        candidates = [
            p
            for p in dict.fromkeys(self._peers())
            if p != self.me and self._messenger.supports(p, PullRequest) is not False  # e.g. ranking off there
        ]
        return self._rng.choice(candidates) if candidates else None

    async def pull_once(self, peer: PeerId | None = None) -> int:
        """Ask ``peer`` (default: a random known one) for rows we lack; return rows taken.

        With ``gossip = "digest"`` the request says what we hold; with ``"pull"`` the peer
        sends what it has not sent us yet. While a reply comes back full, ask the same peer
        again (up to ``pull_rounds`` replies), so one pull catches up with that peer.
        """
        peer = peer or self._random_peer()
        if peer is None:
            return 0
        counters = self._messenger.counters
        taken = 0
        for _ in range(self._config.pull_rounds):
            have = self.log.digest() if self._config.gossip == "digest" else None
            try:
                with deadline(self._config.pull_timeout):
                    reply = await self._messenger.request(peer, PullRequest(self._config.pull_rows, have), PullReply)
            except (NetworkError, Rejected):
                counters.add("ranking", "pull_failed")
                break
            try:
                taken += await self.receive(peer, reply.rows)
            except _NoRoom:  # our row budget is spent: asking for more now would waste it
                break
            if len(reply.rows) < self._config.pull_rows:
                break
        return taken

    async def push_once(self) -> int:
        """Send one random known peer the rows we have not pushed to it; return rows it took."""
        peer = self._random_peer()
        if peer is None:
            return 0
        pointer = f"push>{peer}"  # our own pointer for what we pushed to that peer
        rows = self.log.rows_after_pointer(pointer, self._config.pull_rows)
        if not rows:
            return 0
        try:
            with deadline(self._config.pull_timeout):
                ack = await self._messenger.request(peer, PushRows(tuple(SignedRow(r, s) for _, r, s in rows)), PushAck)
        except (NetworkError, Rejected):
            self._messenger.counters.add("ranking", "push_failed")
            return 0
        self.log.advance(pointer, rows)
        self._messenger.counters.add("ranking", "rows_pushed", len(rows))
        return ack.taken

    def _admit_push(self, peer: PeerId, size: int) -> str | None:
        """Whether a push is worth reading at all: the reason it is refused unread, or None."""
        if self._config.gossip != "push":  # unsolicited rows are the easiest flood: only on request
            self._messenger.counters.add("ranking", "push_refused")
            return "this node does not take pushed rows (its gossip is not 'push')"
        # room for as many rows as ``receive`` will ask of it: a chunk, or the fewest rows it can hold
        fewest = size // (MAX_ROW_BYTES + _ROW_OVERHEAD)
        spent = self.log.room(peer, self._clock(), max(1, min(_CHUNK, fewest)))
        if spent is not None:
            self._messenger.counters.add("ranking", f"push_refused_{spent}")
            return f"no room for pushed rows now ({spent}); push later"
        return None

    async def _on_push(self, peer: PeerId, push: PushRows) -> PushAck:
        try:
            return PushAck(await self.receive(peer, push.rows))
        except _NoRoom as exc:
            self._messenger.counters.add("ranking", f"push_refused_{exc}")
            raise RequestRefused(f"no room for pushed rows now ({exc}); push later") from None

    async def receive(self, peer: PeerId, rows: Sequence[SignedRow]) -> int:
        """Hand ``rows`` from ``peer`` to the click log; return how many were new and taken.

        ``_NoRoom`` if the sender's or everyone's row budget has no room for a chunk: the
        rows are refused unread. Otherwise in chunks of ``_CHUNK`` rows, each checked and
        committed without a pause and followed by a checkpoint: the worst rows cost about a
        millisecond each (a signature, a few dozen index words), and a 500-row reply must
        not hold the node up for half a second while pings and other requests wait. One
        batch at a time, whoever sent it: two dozen senders pushing at once would otherwise
        each run a chunk in every pass of the event loop, and a ping, which needs several
        passes, waited seconds.
        """
        async with self._intake:
            spent = self.log.room(peer, self._clock(), min(len(rows), _CHUNK))
            if spent is not None:
                self._messenger.counters.add("ranking", f"rows_refused_{spent}", len(rows))
                raise _NoRoom(spent)
            taken = 0
            for start in range(0, len(rows), _CHUNK):
                intake = self.log.receive(peer, rows[start : start + _CHUNK], self._clock(), self._met_now)
                for offence in intake.offences:
                    self._messenger.network.penalize(peer, offence)
                taken += intake.taken
                await trio.lowlevel.checkpoint()
            if self.log.over_caps():
                await self._evict()
        return taken

    def _met_now(self) -> set[PeerId]:
        return set(self._met())

    async def _evict(self) -> None:
        """Drop whole issuers until the log is back under its caps, ``_CHUNK`` issuers per commit."""
        chosen = self.log.evictions(self._met_now())
        for start in range(0, len(chosen), _CHUNK):
            self.log.evict(chosen[start : start + _CHUNK])
            await trio.lowlevel.checkpoint()

    async def _on_pull(self, peer: PeerId, request: PullRequest) -> PullReply:
        if request.have is not None:
            rows = self.log.rows_not_in(request.have, request.max_rows)
        else:
            rows = self.log.rows_after_pointer(peer, request.max_rows)
            self.log.advance(peer, rows)
        self._messenger.counters.add("ranking", "rows_served", len(rows))
        return PullReply(tuple(SignedRow(row, sig) for _, row, sig in rows))
