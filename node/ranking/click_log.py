"""The click log as a state machine, without I/O of its own (in the style of h11).

What a node holds of the swarm's click log, and every decision about it: which rows a peer's
batch may bring (admission by sender and issuer rates, the caps, issuers evicted before),
which of them are new, what to evict past the caps, what we hold (the digest a pull sends),
and which rows a peer lacks. Rows and clicks go in; rows to send, digests, evictions and
each batch's outcome (``Intake``: taken, and the offences of the sender) come out. The
network, timers and checkpoints are the trio driver's (``gossip.ClickLogGossip``); this class only
reads and writes the store, synchronously, in short transactions, and counts. Tested
without trio in ``tests/test_click_log.py``.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

from edgeswarm.learning.grank import Click, GRank, GRankParams, normalise
from edgeswarm.learning.item_index import ItemIndex
from edgeswarm.node.ranking.click_log_limits import ClickLogLimits, RowAdmission
from edgeswarm.node.ranking.click_log_store import ClickLogStore
from edgeswarm.protocols.counters import Counters
from edgeswarm.protocols.envelope import Rejected
from edgeswarm.protocols.peer_id import PeerId
from edgeswarm.protocols.ranking.messages import MAX_HOLDINGS, ClickRow, Holding, PullReply, SignedRow
from edgeswarm.protocols.ranking.rows import decode_row, verify_row

REPLY_ROOM = PullReply.MAX_BYTES - 1024
"""Bytes of rows one reply (or push) carries at most."""

# rows in our own store were verified when they arrived: decode them without re-checking
_stored_row = msgspec.msgpack.Decoder(ClickRow)


class SeenNumbers:
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

    def __len__(self) -> int:
        return self.below + len(self.extra)

    def add(self, number: int) -> None:
        self.top = max(self.top, number + 1)
        self.extra.add(number)
        while self.below in self.extra:
            self.extra.discard(self.below)
            self.below += 1


@dataclass
class Intake:
    """What one batch of a peer's rows came to: rows new and taken, and why the peer misbehaved."""

    taken: int = 0
    offences: list[str] = field(default_factory=list)


class ClickLog:
    """One node's click log, its G-Rank counts and item index, over the node's store.

    Parameters
    ----------
    me : PeerId
        Our own rows are never evicted.
    rows : ClickLogStore
        The catalog, the rows and the gossip pointers, in the node's store.
    params : GRankParams
    limits : ClickLogLimits
        Rates per sender and per issuer, and the caps on what strangers may store.
    counters : Counters
        Where each decision is counted (``ranking.*``).
    """

    def __init__(
        self, me: PeerId, rows: ClickLogStore, params: GRankParams, limits: ClickLogLimits, counters: Counters
    ) -> None:
        self.me = me
        self.rows = rows
        self.counters = counters
        self.admission = RowAdmission(limits)
        self.held: defaultdict[PeerId, SeenNumbers] = defaultdict(SeenNumbers)
        self.bytes: Counter[PeerId] = Counter()  # bytes of rows and signatures kept, per issuer
        self.next_number = 0
        self._params = params
        self._load()

    # -- the state on disk -------------------------------------------------------------------
    def _load(self) -> None:
        """G-Rank and the item index over the store's tables, and which rows we hold.

        A store written before the tables existed (or whose fold was cut short) has its
        catalog and rows folded in once, in one transaction.
        """
        store = self.rows.store
        if store.get_meta("ranking_fold") is not None:
            with store.transaction():
                self._fold_everything()
        self.grank = GRank(self.me, self._params, store.db)
        self.index = ItemIndex(store.db)
        self.held.clear()
        self.bytes.clear()
        for node, count, top, size in self.rows.click_log_issuers():
            held = self.held[node]
            if count == top:  # the usual case: every number below ``top``
                held.below = held.top = top
            else:
                for number in self.rows.click_numbers_of(node):
                    held.add(number)
            self.bytes[node] = size
        mine = self.held.get(self.me)
        self.next_number = 0 if mine is None else mine.top

    def _fold_everything(self) -> None:
        """Rebuild G-Rank's tables and the item index from the catalog and every stored row."""
        from edgeswarm.learning import grank, item_index

        store = self.rows.store
        for module in (grank, item_index):
            grank.create(store.db, module.SCHEMA)
            for table in module.TABLES:
                store.db.execute(f"DELETE FROM {table}")
        self.grank = GRank(self.me, self._params, store.db)
        self.index = ItemIndex(store.db)
        for item, title, tags, _ in self.rows.items():
            self.index.add(item, title, tags)
        batch: list[ClickRow] = []
        for row in self.rows.iter_click_rows():
            batch.append(_stored_row.decode(row))
            if len(batch) == 4096:
                self._take(batch)
                batch.clear()
        self._take(batch)
        store.delete_meta("ranking_fold")

    def _take(self, rows: list[ClickRow]) -> None:
        """Fold stored rows into G-Rank and the item index (inside the store's transaction)."""
        self.grank.add_many([Click(row.node, normalise(row.terms), row.item) for row in rows])
        self.index.add_many((row.item, row.title, row.tags, row.node) for row in rows if row.title or row.tags)
        for row in rows:
            self.held[row.node].add(row.number)
            if row.node == self.me:
                self.next_number = max(self.next_number, row.number + 1)

    # -- in: the catalog and our own clicks ---------------------------------------------------
    def add_items(self, items: Iterable[tuple[str, str, Iterable[str]]], *, local: bool = True) -> int:
        """Add catalog items ``(item, title, tags)``; return how many."""
        rows = [(item, title, tuple(tags), local) for item, title, tags in items]
        with self.rows.store.transaction():
            self.rows.add_items(rows)
            for item, title, tags, _ in rows:
                self.index.add(item, title, tags)
        return len(rows)

    def record(self, row: ClickRow, signed: SignedRow) -> None:
        """Keep our own click ``row`` (numbered ``next_number``), signed as ``signed``."""
        with self.rows.store.transaction():
            self.rows.add_click_row(row.node, row.number, signed.row, signed.sig)
            self._take([row])
        self.bytes[row.node] += len(signed.row) + len(signed.sig)
        self.counters.add("ranking", "clicks")

    # -- in: a peer's rows ----------------------------------------------------------------------
    def room(self, peer: PeerId, now: float, rows: int) -> str | None:
        """Why ``rows`` more rows from ``peer`` cannot be taken now ("peer_rate", "total_rate"), or None."""
        return self.admission.spent(peer, now, rows)

    def receive(self, peer: PeerId, rows: Sequence[SignedRow], now: float, met: Callable[[], set[PeerId]]) -> Intake:
        """Check ``rows`` from ``peer`` and keep the new ones in one transaction.

        Duplicates are skipped before their signature is checked; rows of an issuer evicted
        before are refused unless we met that issuer (``met``, asked only when needed);
        rows over the rates are refused unread (a later pull brings them again); a bad row
        is an offence of the sender.
        """
        counters = self.counters
        intake = Intake()
        met_now: set[PeerId] | None = None
        fresh: dict[tuple[str, int], tuple[ClickRow, SignedRow]] = {}
        for seen, signed in enumerate(rows):
            spent = self.admission.spent(peer, now)
            if spent is not None:  # the rest is refused unread: a later pull brings it again
                counters.add("ranking", f"rows_refused_{spent}", len(rows) - seen)
                break
            try:
                row = decode_row(signed)
                held = self.held.get(row.node)  # no entry for an issuer until a row of it is kept
                if (held is not None and row.number in held) or (row.node, row.number) in fresh:
                    counters.add("ranking", "rows_duplicate")  # have it: no need to verify again
                    continue
                if self.admission.evicted(row.node):
                    met_now = met_now if met_now is not None else met()
                    if row.node not in met_now:
                        counters.add("ranking", "rows_refused_evicted")
                        continue
                refused = self.admission.admit(peer, row.node, now)
                if refused is not None:  # not stored and not marked held: a later pull brings it again
                    counters.add("ranking", f"rows_refused_{refused}")
                    continue
                verify_row(signed, row)
            except Rejected as exc:
                counters.add("ranking", "rows_rejected")
                intake.offences.append(f"click row: {exc}")
                continue
            fresh[(row.node, row.number)] = (row, signed)
        if not fresh:
            return intake
        # ``held`` mirrors the store, so every fresh row is new there too; one transaction
        with self.rows.store.transaction():
            self.rows.add_click_rows([(r.node, r.number, s.row, s.sig) for r, s in fresh.values()])
            self._take([row for row, _ in fresh.values()])
        for row, signed in fresh.values():
            self.bytes[row.node] += len(signed.row) + len(signed.sig)
        counters.add("ranking", "rows_received", len(fresh))
        intake.taken = len(fresh)
        return intake

    # -- out: evictions --------------------------------------------------------------------------
    def over_caps(self) -> bool:
        return self.admission.over(self.grank.rows, len(self.held), self.bytes.total())

    def evictions(self, met: set[PeerId]) -> list[PeerId]:
        """Whole issuers to drop until the log is back under its caps (never us, met peers last)."""
        counts = {node: len(seen) for node, seen in self.held.items()}
        return self.admission.choose_evictions(counts, met, self.me, self.bytes)

    def evict(self, issuers: Sequence[PeerId]) -> None:
        """Drop every row of ``issuers``, their counts and their item descriptions, in one commit."""
        with self.rows.store.transaction():
            self.rows.delete_click_rows_of(issuers)
            self.grank.forget(issuers)
            self.index.forget(issuers)
        for node in issuers:
            self.held.pop(node, None)
            self.bytes.pop(node, None)
        self.counters.add("ranking", "issuers_evicted", len(issuers))

    # -- out: what we hold, and what a peer lacks --------------------------------------------------
    def digest(self) -> tuple[Holding, ...]:
        """What we hold, issuer by issuer (the longest runs first if there are too many)."""
        runs = [(seen.below, node) for node, seen in self.held.items() if seen.below > 0]
        if len(runs) > MAX_HOLDINGS:
            runs = heapq.nlargest(MAX_HOLDINGS, runs)
        return tuple(Holding(node, below) for below, node in runs)

    def rows_not_in(self, digest: Sequence[Holding], max_rows: int) -> list[tuple[int, bytes, bytes]]:
        """Our rows that a requester's digest does not cover, within a reply's bounds."""
        have = {h.node: h.below for h in digest}
        out: list[tuple[int, bytes, bytes]] = []
        size = 0
        for node, seen in self.held.items():
            start = have.get(node, 0)
            if seen.top <= start:
                continue
            for entry in self.rows.click_rows_of(node, start, max_rows - len(out)):
                size += len(entry[1]) + len(entry[2]) + 16
                if size > REPLY_ROOM:
                    return out
                out.append(entry)
            if len(out) >= max_rows:
                break
        return out

    def rows_after_pointer(self, pointer: str, max_rows: int) -> list[tuple[int, bytes, bytes]]:
        """The rows after what ``pointer`` (a peer we serve or push to) was last sent, oldest first.

        The paper's pull and our push keep such a pointer per peer; ``advance`` moves it once
        the rows went out.
        """
        return self.rows.click_rows_after(self.rows.pull_progress(pointer), max_rows, REPLY_ROOM)

    def advance(self, pointer: str, rows: Sequence[tuple[int, bytes, bytes]]) -> None:
        if rows:
            self.rows.set_pull_progress(pointer, rows[-1][0])
