"""Ranking service: the catalog, the click log and G-Rank, fed by gossip; the trio driver.

After each of our clicks, and in the background every ``anti_entropy_interval`` seconds
(jittered; backing off while rounds bring nothing new), the node asks one random peer it
has met (view, known or connected peers, never an issuer it only read of) for click-log
rows: by default with a digest of what it holds, so the peer sends only rows it lacks
(``gossip = "digest"``); or the paper's pull, where the serving side keeps a progress
pointer per requester (``"pull"``); or it pushes (``"push"``, the only mode that accepts
pushed rows). Every decision about rows (admission, duplicates, signatures, eviction, the
digest, what a peer lacks) is the sans-IO ``click_log.ClickLog``'s; this module drives it
over the messenger and trio's clock, one batch at a time with checkpoints between chunks.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import trio

from edgeswarm.learning.grank import GRank, GRankParams, normalise, rank, rank_baseline
from edgeswarm.learning.item_index import ItemIndex
from edgeswarm.node.config import RankingConfig
from edgeswarm.node.ranking.click_log import ClickLog
from edgeswarm.node.ranking.click_log_limits import ClickLogLimits
from edgeswarm.node.ranking.click_log_store import ClickLogStore
from edgeswarm.node.store import Store
from edgeswarm.protocols.envelope import Rejected, Signer
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import NetworkError, RequestRefused, deadline
from edgeswarm.protocols.peer_id import PeerId
from edgeswarm.protocols.ranking.messages import (
    MAX_ROW_BYTES,
    ClickRow,
    PullReply,
    PullRequest,
    PushAck,
    PushRows,
    SignedRow,
)
from edgeswarm.protocols.ranking.rows import sign_row

_CHUNK = 64  # rows checked and committed (or issuers evicted) between two checkpoints
_ROW_OVERHEAD = 128  # a row's signature and framing in a push, at most


class _NoRoom(Exception):
    """The row budget ("peer_rate" or "total_rate", the message) has no room for a batch now."""


@dataclass(frozen=True, slots=True)
class Result:
    item: str
    title: str
    tags: tuple[str, ...]


class Ranking:
    """G-Rank search for one node.

    Parameters
    ----------
    messenger : Messenger
    store : Store
    config : RankingConfig
    rng : random.Random
    signer : Signer
        Signs this node's click rows.
    peers : callable
        Candidate peers to pull from (the view and recently met peers).
    met : callable (default: ``peers``)
        Every peer met directly; their rows are evicted last.
    clock : callable (default: trio's clock)
        Time for the admission rates (the simulator's virtual time).
    """

    def __init__(
        self,
        messenger: Messenger,
        store: Store,
        config: RankingConfig,
        rng: random.Random,
        signer: Signer,
        peers: Callable[[], list[PeerId]],
        met: Callable[[], Iterable[PeerId]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._messenger = messenger
        self._config = config
        self._rng = rng
        self._signer = signer
        self._peers = peers
        self._met = met or peers
        self._clock = clock or trio.current_time
        self.me = messenger.local_peer
        limits = ClickLogLimits(
            config.rows_per_peer_minute,
            config.rows_per_issuer_minute,
            config.max_rows,
            config.max_issuers,
            config.max_log_mb,
            config.rows_per_minute,
        )
        params = GRankParams(config.top_k_terms, config.isolation)
        self.log = ClickLog(self.me, ClickLogStore(store), params, limits, messenger.counters)
        self._intake = trio.Lock()  # see ``_receive``
        self._last: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._interval = config.anti_entropy_interval
        # its own stream of jitter, so background rounds do not shift the search's randomness
        self._jitter = random.Random(f"anti-entropy {self.me}")
        messenger.register(PullRequest, PullReply, PushRows, PushAck)
        messenger.on_request(PullRequest, self._on_pull)
        messenger.on_request(PushRows, self._on_push, admit=self._admit_push)

    @property
    def grank(self) -> GRank:
        return self.log.grank

    @property
    def index(self) -> ItemIndex:
        return self.log.index

    # -- the user's side -------------------------------------------------------------------
    def add_items(self, items: Iterable[tuple[str, str, Iterable[str]]], *, local: bool = True) -> int:
        """Add catalog items ``(item, title, tags)``; return how many."""
        return self.log.add_items(items, local=local)

    def search(self, query: str, *, explore: bool = True) -> list[Result]:
        """Ranked results for ``query``; remembered so that a following click can cite them."""
        terms = normalise(query)
        if not terms:
            raise ValueError("a query needs at least one word")
        p = self._config.p_explore if explore else 0.0
        ranked = rank(
            self.grank, self.index.matches(terms), terms, rng=self._rng, p_explore=p, limit=self._config.results
        )
        self._last = (terms, tuple(ranked))
        described = self.index.metas(ranked)
        return [Result(k, *described.get(k, ("", ()))) for k in ranked]

    def ranking_by(self, method: str, query: str, candidates: Iterable[str] | None = None) -> list[str]:
        """Item ids for ``query`` by ``method`` (grank, random, popularity or local), no exploration.

        What the simulator compares G-Rank with, on this node's own data. ``candidates``
        (default: the catalog's matches for the query) are the items to order, e.g. those a
        replayed log says were shown.
        """
        pool = self.index.matches(query) if candidates is None else set(candidates)
        if method == "grank":
            return rank(self.grank, pool, query, rng=self._rng, p_explore=0.0, limit=self._config.results)
        return rank_baseline(method, self.grank, pool, query, rng=self._rng, limit=self._config.results)

    def click_counts(self, query: str) -> Counter[str]:
        """Clicks per item for ``query`` in the rows this node holds (its view of the log)."""
        return self.grank.counts(query)

    async def click(self, item: str) -> ClickRow:
        """Record a click on ``item`` for the last search, then pull rows from one peer."""
        if self._last is None:
            raise ValueError("search before clicking")
        terms, shown = self._last
        meta = self.index.meta(item)
        if item not in shown and meta is None:
            raise ValueError(f"{item!r} is neither among the last results nor in the catalog")
        title, tags = meta or ("", ())
        row = ClickRow(
            node=self.me,
            number=self.log.next_number,
            terms=terms,
            seen_before=self.grank.clicked_for(terms),
            shown=shown,
            item=item,
            title=title[:256],
            tags=tuple(tags)[:16],
        )
        self.log.record(row, sign_row(self._signer, row))
        self._interval = self._config.anti_entropy_interval  # our user is active again
        await self._gossip_once()
        return row

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
            taken = await self._gossip_once()
            counters.add("ranking", "anti_entropy_rounds")
            if taken:
                self._interval = self._config.anti_entropy_interval
            else:
                counters.add("ranking", "anti_entropy_idle")
                self._interval = min(2 * self._interval, self._config.anti_entropy_max_interval)

    async def _gossip_once(self) -> int:
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
                taken += await self._receive(peer, reply.rows)
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
        # room for as many rows as ``_receive`` will ask of it: a chunk, or the fewest rows it can hold
        fewest = size // (MAX_ROW_BYTES + _ROW_OVERHEAD)
        spent = self.log.room(peer, self._clock(), max(1, min(_CHUNK, fewest)))
        if spent is not None:
            self._messenger.counters.add("ranking", f"push_refused_{spent}")
            return f"no room for pushed rows now ({spent}); push later"
        return None

    async def _on_push(self, peer: PeerId, push: PushRows) -> PushAck:
        try:
            return PushAck(await self._receive(peer, push.rows))
        except _NoRoom as exc:
            self._messenger.counters.add("ranking", f"push_refused_{exc}")
            raise RequestRefused(f"no room for pushed rows now ({exc}); push later") from None

    async def _receive(self, peer: PeerId, rows: Sequence[SignedRow]) -> int:
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
