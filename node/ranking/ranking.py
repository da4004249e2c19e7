"""Ranking service: the catalog, the click log and G-Rank, fed by gossip.

After each of our clicks, and in the background every ``anti_entropy_interval`` seconds
(jittered; backing off while rounds bring nothing new), the node asks one random peer it
has met (view, known or connected peers, never an issuer it only read of) for click-log
rows: by default with a digest of what it
holds, so the peer sends only rows it lacks (``gossip = "digest"``); or the paper's pull,
where the serving side keeps a progress pointer per requester (``"pull"``); or it pushes
(``"push"``, the only mode that accepts pushed rows). Rows are signed by the node that
clicked and verified on arrival, deduplicated by (node, number), admitted within rates per
sender and issuer, stored, and folded into G-Rank incrementally; past the log's caps whole
issuers are evicted (``click_log_limits``). G-Rank's counts and the item index are tables in
the node's store, written in the same transaction as the rows that change them, so memory
does not grow with the log and a restart reads them instead of replaying it.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import msgspec
import trio

from edgeswarm.learning.grank import Click, GRank, GRankParams, normalise, rank, rank_baseline
from edgeswarm.learning.item_index import ItemIndex
from edgeswarm.node.config import RankingConfig
from edgeswarm.node.ranking.click_log_limits import ClickLogLimits, RowAdmission
from edgeswarm.node.store import Store
from edgeswarm.protocols.envelope import Rejected, Signer
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import NetworkError, RequestRefused, deadline
from edgeswarm.protocols.peer_id import PeerId
from edgeswarm.protocols.ranking.messages import (
    MAX_HOLDINGS,
    MAX_ROW_BYTES,
    ClickRow,
    Holding,
    PullReply,
    PullRequest,
    PushAck,
    PushRows,
    SignedRow,
)
from edgeswarm.protocols.ranking.rows import decode_row, sign_row, verify_row

_REPLY_ROOM = PullReply.MAX_BYTES - 1024
_CHUNK = 64  # rows checked and committed (or issuers evicted) between two checkpoints
_ROW_OVERHEAD = 128  # a row's signature and framing in a push, at most


class _NoRoom(Exception):
    """The row budget ("peer_rate" or "total_rate", the message) has no room for a batch now."""


# rows in our own store were verified when they arrived: decode them without re-checking
_stored_row = msgspec.msgpack.Decoder(ClickRow)


class _SeenNumbers:
    """Which of one issuer's row numbers we hold: all below ``below``, plus ``extra``.

    Rows from one issuer mostly arrive in order, so this stays a couple of integers.
    ``top`` is one past the highest number held.
    """

    __slots__ = ("below", "extra", "top")

    def __init__(self) -> None:
        self.below = 0
        self.top = 0
        self.extra: set[int] = set()

    def __contains__(self, number: int) -> bool:
        return number < self.below or number in self.extra

    def add(self, number: int) -> None:
        self.top = max(self.top, number + 1)
        self.extra.add(number)
        while self.below in self.extra:
            self.extra.discard(self.below)
            self.below += 1


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
        self._store = store
        self._config = config
        self._rng = rng
        self._signer = signer
        self._peers = peers
        self._met = met or peers
        self._clock = clock or trio.current_time
        self.me = messenger.local_peer
        self._admission = RowAdmission(
            ClickLogLimits(
                config.rows_per_peer_minute,
                config.rows_per_issuer_minute,
                config.max_rows,
                config.max_issuers,
                config.max_log_mb,
                config.rows_per_minute,
            )
        )
        self._held: defaultdict[PeerId, _SeenNumbers] = defaultdict(_SeenNumbers)
        self._bytes: Counter[PeerId] = Counter()  # bytes of rows and signatures kept, per issuer
        self._intake = trio.Lock()  # see ``_receive``
        self._last: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self._next_number = 0
        self._interval = config.anti_entropy_interval
        # its own stream of jitter, so background rounds do not shift the search's randomness
        self._jitter = random.Random(f"anti-entropy {self.me}")
        messenger.register(PullRequest, PullReply, PushRows, PushAck)
        messenger.on_request(PullRequest, self._on_pull)
        messenger.on_request(PushRows, self._on_push, admit=self._admit_push)
        self._load()

    def _load(self) -> None:
        """G-Rank and the item index over the store's tables, and which rows we hold.

        A store written before the tables existed (or whose fold was cut short) has its
        catalog and rows folded in once, in one transaction.
        """
        db = self._store.db
        params = GRankParams(self._config.top_k_terms, self._config.isolation)
        if self._store.get_meta("ranking_fold") is not None:
            with self._store.transaction():
                self._fold_everything(params)
        self.grank = GRank(self.me, params, db)
        self.index = ItemIndex(db)
        self._held.clear()
        self._bytes.clear()
        for node, rows, top, size in self._store.click_log_issuers():
            held = self._held[node]
            if rows == top:  # the usual case: every number below ``top``
                held.below = held.top = top
            else:
                for number in self._store.click_numbers_of(node):
                    held.add(number)
            self._bytes[node] = size
        mine = self._held.get(self.me)
        self._next_number = 0 if mine is None else mine.top

    def _fold_everything(self, params: GRankParams) -> None:
        """Rebuild G-Rank's tables and the item index from the catalog and every stored row."""
        from edgeswarm.learning import grank, item_index

        db = self._store.db
        for module in (grank, item_index):
            grank.create(db, module.SCHEMA)
            for table in module.TABLES:
                db.execute(f"DELETE FROM {table}")
        self.grank = GRank(self.me, params, db)
        self.index = ItemIndex(db)
        for item, title, tags, _ in self._store.items():
            self.index.add(item, title, tags)
        batch: list[ClickRow] = []
        for row in self._store.iter_click_rows():
            batch.append(_stored_row.decode(row))
            if len(batch) == 4096:
                self._take(batch)
                batch.clear()
        self._take(batch)
        self._store.delete_meta("ranking_fold")

    # -- the user's side -------------------------------------------------------------------
    def add_items(self, items: Iterable[tuple[str, str, Iterable[str]]], *, local: bool = True) -> int:
        """Add catalog items ``(item, title, tags)``; return how many."""
        rows = [(item, title, tuple(tags), local) for item, title, tags in items]
        with self._store.transaction():
            self._store.add_items(rows)
            for item, title, tags, _ in rows:
                self.index.add(item, title, tags)
        return len(rows)

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
            number=self._next_number,
            terms=terms,
            seen_before=self.grank.clicked_for(terms),
            shown=shown,
            item=item,
            title=title[:256],
            tags=tuple(tags)[:16],
        )
        signed = sign_row(self._signer, row)
        with self._store.transaction():
            self._store.add_click_row(row.node, row.number, signed.row, signed.sig)
            self._take([row])
        self._bytes[row.node] += len(signed.row) + len(signed.sig)
        self._messenger.counters.add("ranking", "clicks")
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
            have = self._digest() if self._config.gossip == "digest" else None
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
        key = f"push>{peer}"  # our own pointer for what we pushed to that peer
        rows = self._store.click_rows_after(self._store.pull_progress(key), self._config.pull_rows, _REPLY_ROOM)
        if not rows:
            return 0
        try:
            with deadline(self._config.pull_timeout):
                ack = await self._messenger.request(peer, PushRows(tuple(SignedRow(r, s) for _, r, s in rows)), PushAck)
        except (NetworkError, Rejected):
            self._messenger.counters.add("ranking", "push_failed")
            return 0
        self._store.set_pull_progress(key, rows[-1][0])
        self._messenger.counters.add("ranking", "rows_pushed", len(rows))
        return ack.taken

    def _admit_push(self, peer: PeerId, size: int) -> str | None:
        """Whether a push is worth reading at all: the reason it is refused unread, or None."""
        if self._config.gossip != "push":  # unsolicited rows are the easiest flood: only on request
            self._messenger.counters.add("ranking", "push_refused")
            return "this node does not take pushed rows (its gossip is not 'push')"
        # room for as many rows as ``_receive`` will ask of it: a chunk, or the fewest rows it can hold
        fewest = size // (MAX_ROW_BYTES + _ROW_OVERHEAD)
        spent = self._admission.spent(peer, self._clock(), max(1, min(_CHUNK, fewest)))
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
        """Check, store and fold ``rows`` from ``peer``; return how many were new and taken.

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
            spent = self._admission.spent(peer, self._clock(), min(len(rows), _CHUNK))
            if spent is not None:
                self._messenger.counters.add("ranking", f"rows_refused_{spent}", len(rows))
                raise _NoRoom(spent)
            taken = 0
            for start in range(0, len(rows), _CHUNK):
                taken += self._receive_chunk(peer, rows[start : start + _CHUNK])
                await trio.lowlevel.checkpoint()
            if self._admission.over(self.grank.rows, len(self._held), self._bytes.total()):
                await self._evict()
        return taken

    def _receive_chunk(self, peer: PeerId, rows: Sequence[SignedRow]) -> int:
        counters = self._messenger.counters
        now = self._clock()
        met: set[PeerId] | None = None
        fresh: dict[tuple[str, int], tuple[ClickRow, SignedRow]] = {}
        for seen, signed in enumerate(rows):
            spent = self._admission.spent(peer, now)
            if spent is not None:  # the rest is refused unread: a later pull brings it again
                counters.add("ranking", f"rows_refused_{spent}", len(rows) - seen)
                break
            try:
                row = decode_row(signed)
                held = self._held.get(row.node)  # no entry for an issuer until a row of it is kept
                if (held is not None and row.number in held) or (row.node, row.number) in fresh:
                    counters.add("ranking", "rows_duplicate")  # have it: no need to verify again
                    continue
                if self._admission.evicted(row.node):
                    met = met if met is not None else set(self._met())
                    if row.node not in met:
                        counters.add("ranking", "rows_refused_evicted")
                        continue
                refused = self._admission.admit(peer, row.node, now)
                if refused is not None:  # not stored and not marked held: a later pull brings it again
                    counters.add("ranking", f"rows_refused_{refused}")
                    continue
                verify_row(signed, row)
            except Rejected as exc:
                counters.add("ranking", "rows_rejected")
                self._messenger.network.penalize(peer, f"click row: {exc}")
                continue
            fresh[(row.node, row.number)] = (row, signed)
        if not fresh:
            return 0
        # ``_held`` mirrors the store, so every fresh row is new there too; one transaction
        with self._store.transaction():
            self._store.add_click_rows([(r.node, r.number, s.row, s.sig) for r, s in fresh.values()])
            self._take([row for row, _ in fresh.values()])
        for row, signed in fresh.values():
            self._bytes[row.node] += len(signed.row) + len(signed.sig)
        counters.add("ranking", "rows_received", len(fresh))
        return len(fresh)

    async def _evict(self) -> None:
        """Drop whole issuers until the log is back under its caps, ``_CHUNK`` issuers per commit."""
        counts = {node: seen.below + len(seen.extra) for node, seen in self._held.items()}
        chosen = self._admission.choose_evictions(counts, set(self._met()), self.me, self._bytes)
        for start in range(0, len(chosen), _CHUNK):
            some = chosen[start : start + _CHUNK]
            with self._store.transaction():
                self._store.delete_click_rows_of(some)
                self.grank.forget(some)
                self.index.forget(some)
            for node in some:
                self._held.pop(node, None)
                self._bytes.pop(node, None)
            await trio.lowlevel.checkpoint()
        self._messenger.counters.add("ranking", "issuers_evicted", len(chosen))

    def _digest(self) -> tuple[Holding, ...]:
        """What we hold, issuer by issuer (the longest runs first if there are too many)."""
        runs = [(seen.below, node) for node, seen in self._held.items() if seen.below > 0]
        if len(runs) > MAX_HOLDINGS:
            runs = heapq.nlargest(MAX_HOLDINGS, runs)
        return tuple(Holding(node, below) for below, node in runs)

    async def _on_pull(self, peer: PeerId, request: PullRequest) -> PullReply:
        if request.have is not None:
            rows = self._rows_not_in(request.have, request.max_rows)
        else:
            after = self._store.pull_progress(peer)
            rows = self._store.click_rows_after(after, limit=request.max_rows, max_bytes=_REPLY_ROOM)
            if rows:
                self._store.set_pull_progress(peer, rows[-1][0])
        self._messenger.counters.add("ranking", "rows_served", len(rows))
        return PullReply(tuple(SignedRow(row, sig) for _, row, sig in rows))

    def _rows_not_in(self, digest: tuple[Holding, ...], max_rows: int) -> list[tuple[int, bytes, bytes]]:
        """Our rows that the requester's digest does not cover, within the reply's bounds."""
        have = {h.node: h.below for h in digest}
        out: list[tuple[int, bytes, bytes]] = []
        size = 0
        for node, seen in self._held.items():
            start = have.get(node, 0)
            if seen.top <= start:
                continue
            for entry in self._store.click_rows_of(node, start, max_rows - len(out)):
                size += len(entry[1]) + len(entry[2]) + 16
                if size > _REPLY_ROOM:
                    return out
                out.append(entry)
            if len(out) >= max_rows:
                break
        return out

    # -- internals -------------------------------------------------------------------------
    def _take(self, rows: list[ClickRow]) -> None:
        """Fold stored rows into G-Rank and the item index (inside the store's transaction)."""
        self.grank.add_many([Click(row.node, normalise(row.terms), row.item) for row in rows])
        self.index.add_many((row.item, row.title, row.tags, row.node) for row in rows if row.title or row.tags)
        for row in rows:
            self._held[row.node].add(row.number)
            if row.node == self.me:
                self._next_number = max(self._next_number, row.number + 1)
