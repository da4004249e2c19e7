"""G-Rank: unsupervised, continuous learn-to-rank from click logs shared between peers.

Gold and Pouwelse, "G-Rank: Unsupervised Continuous Learn-to-Rank for Edge Devices in a P2P
Network", arXiv:2301.12530, 2023.

Node *i* weighs each peer *j* by how alike their behaviour is,

    S_i(n_j) = (kt + km^2) / ku,

kt = |TopK query terms of i and of j in common|, km = |items both clicked|,
ku = |items either clicked|, divided by max_j S_i(n_j) so it lies in [0, 1]; and scores a
candidate item k for query Q as

    R_i(k | Q) = sum_j C_{j,k}(Q) * (S_i(n_j) + F),

with C_{j,k}(Q) node j's clicks on k for Q and F the isolation constant (0: only similar
peers count; 1: every click counts as well). Assumptions where the paper is silent: a query
is identified by its set of normalised terms; i's own clicks count with S_i(n_i) = 1 and i is
left out of the max; K = 10.

Everything is incremental: ``add`` updates counts, overlap sizes and TopK sets in time
independent of the log's length, and ``scores`` is one vectorised pass over the (item, node)
pairs clicked for that query. The counts live in SQLite tables (the node's store), not in
Python objects, so a kept row costs memory only in the database's page cache, and a restart
reads a few numbers per node back instead of replaying the log. ``full_scores`` recomputes
from scratch (for tests).
"""

from __future__ import annotations

import functools
import heapq
import json
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

_WORD = re.compile(r"[\w']+")


def normalise(query: str | Iterable[str]) -> tuple[str, ...]:
    """A query's identity: its lower-cased words, sorted and without repeats."""
    if isinstance(query, str):
        return _normalise(query)
    return _normalise(" ".join(query))


@functools.lru_cache(maxsize=1024)
def _normalise(text: str) -> tuple[str, ...]:
    """Memoised: the same few queries and titles come back in every row. Bounded small: a
    flood of fresh 256-character titles would otherwise pin a few KB each."""
    return tuple(sorted(set(_WORD.findall(text.lower()))))


@dataclass(frozen=True, slots=True)
class Click:
    """One click-log row as the ranking needs it: who searched what and clicked which item."""

    node: str
    terms: tuple[str, ...]
    item: str


@dataclass(frozen=True, slots=True)
class GRankParams:
    """G-Rank settings.

    Parameters
    ----------
    top_k_terms : int (default: 10)
        K of the TopK query terms compared between nodes.
    isolation : float (default: 0.0)
        F: 0 counts only similar peers' clicks; 1 also every click as plain popularity.
    """

    top_k_terms: int = 10
    isolation: float = 0.0


SCHEMA = """
CREATE TABLE IF NOT EXISTS grank_nodes (idx INTEGER PRIMARY KEY, node TEXT NOT NULL UNIQUE, top TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS grank_items (idx INTEGER PRIMARY KEY, item TEXT NOT NULL UNIQUE, clicks INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS grank_queries (idx INTEGER PRIMARY KEY, terms TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS grank_clicks (
    query INTEGER NOT NULL,
    item INTEGER NOT NULL,
    node INTEGER NOT NULL,
    count INTEGER NOT NULL,
    UNIQUE (query, item, node)
);
CREATE INDEX IF NOT EXISTS grank_clicks_by_node ON grank_clicks (node);
CREATE TABLE IF NOT EXISTS grank_clicked (node INTEGER NOT NULL, item INTEGER NOT NULL, PRIMARY KEY (node, item))
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS grank_clicked_by_item ON grank_clicked (item);
CREATE TABLE IF NOT EXISTS grank_terms (node INTEGER NOT NULL, term TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (node, term)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS grank_settings (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
TABLES = (
    "grank_nodes",
    "grank_items",
    "grank_queries",
    "grank_clicks",
    "grank_clicked",
    "grank_terms",
    "grank_settings",
)


def create(db: sqlite3.Connection, schema: str) -> None:
    """Create the tables of ``schema`` that are missing (statement by statement, so inside a
    transaction too)."""
    if sqlite3.sqlite_version_info < (3, 35):
        raise RuntimeError(f"G-Rank's tables need SQLite 3.35 or newer; this Python links {sqlite3.sqlite_version}")
    for statement in schema.split(";"):
        if statement.strip():
            db.execute(statement)


class GRank:
    """One node's G-Rank state, updated row by row, kept in SQLite.

    Per node the counts live in tables (clicks per query, item and node; items each node
    clicked; query terms each node used), so memory does not grow with the log: what stays
    in memory is a few numbers and the TopK terms per node. A restart reads those back
    instead of replaying the log.

    Parameters
    ----------
    me : str
        This node's id (its own clicks count with similarity 1).
    params : GRankParams (default: GRankParams())
    db : sqlite3.Connection | None (default: a private in-memory database)
        Shared with the caller's store, so that an update commits with the rows that brought
        it (the caller opens the transaction). The tables are created if missing.
    """

    def __init__(self, me: str, params: GRankParams | None = None, db: sqlite3.Connection | None = None) -> None:
        self.me = me
        self.params = params or GRankParams()
        self._db = db if db is not None else sqlite3.connect(":memory:", isolation_level=None)
        create(self._db, SCHEMA)
        self._load()

    def _load(self) -> None:
        db, k = self._db, self.params.top_k_terms
        self._index: dict[str, int] = dict(db.execute("SELECT node, idx FROM grank_nodes"))
        top = max(self._index.values(), default=0) + 1
        self._free = sorted(set(range(1, top)) - set(self._index.values()), reverse=True)
        # per node index, for the vectorised similarity: kt, km, |C_j|
        self._kt, self._km, self._size = (np.zeros(max(16, top)) for _ in range(3))
        for node, size in db.execute("SELECT node, COUNT(*) FROM grank_clicked GROUP BY node"):
            self._size[node] = size
        self._tops: dict[int, dict[str, int]] = {idx: {} for idx in self._index.values()}
        kept_with_k = db.execute("SELECT value FROM grank_settings WHERE key = 'top_k_terms'").fetchone() == (k,)
        if kept_with_k:
            rows = db.execute(
                "SELECT n.idx, t.term, t.count FROM grank_nodes n CROSS JOIN json_each(n.top) j "
                "CROSS JOIN grank_terms t ON t.node = n.idx AND t.term = j.value"  # CROSS: this order, by key
            )
        else:  # another K than the tables were kept with: rank every node's terms again
            rows = db.execute(
                "SELECT node, term, count FROM (SELECT node, term, count, ROW_NUMBER() OVER "
                "(PARTITION BY node ORDER BY count DESC, term DESC) AS r FROM grank_terms) WHERE r <= ?",
                (k,),
            )
        for node, term, count in rows.fetchall():
            self._tops[node][term] = count
        if not kept_with_k:
            self._save_tops(self._tops)
            db.execute("INSERT OR REPLACE INTO grank_settings VALUES ('top_k_terms', ?)", (k,))
        self._me = self._node(self.me)
        self._refresh_kt()
        for node, shared in db.execute(
            "SELECT c.node, COUNT(*) FROM grank_clicked m JOIN grank_clicked c ON c.item = m.item "
            "WHERE m.node = ? AND c.node != m.node GROUP BY c.node",
            (self._me,),
        ):
            self._km[node] = shared
        self.rows: int = db.execute("SELECT COALESCE(SUM(count), 0) FROM grank_clicks").fetchone()[0]

    # -- updates ---------------------------------------------------------------------------
    def _node(self, node: str) -> int:
        idx = self._index.get(node)
        if idx is None:
            idx = self._free.pop() if self._free else len(self._index) + 1
            self._db.execute("INSERT INTO grank_nodes VALUES (?, ?, '[]')", (idx, node))
            self._index[node] = idx
            self._tops[idx] = {}
            if idx >= len(self._kt):
                self._kt, self._km, self._size = (np.resize(a, 2 * idx) for a in (self._kt, self._km, self._size))
            self._kt[idx] = self._km[idx] = self._size[idx] = 0.0
        return idx

    def add(self, click: Click) -> None:
        """Take one click-log row into account (each row once; the caller dedupes)."""
        self.add_many([click])

    def add_many(self, clicks: Sequence[Click]) -> None:
        """Take rows into account in one pass: a few statements per batch, not per row.

        Equal to adding them one at a time: clicks, overlaps and term counts are sums, and
        a node's TopK after the batch is the K strongest of its TopK before and the terms the
        batch touched (counts only grow, so no other term can have overtaken them).
        """
        if not clicks:
            return
        db = self._db
        self.rows += len(clicks)
        nodes = [self._node(c.node) for c in clicks]
        queries = [" ".join(c.terms) for c in clicks]
        db.executemany(
            "INSERT INTO grank_items (item, clicks) VALUES (?, 1) ON CONFLICT (item) DO UPDATE SET clicks = clicks + 1",
            [(c.item,) for c in clicks],
        )
        db.executemany("INSERT OR IGNORE INTO grank_queries (terms) VALUES (?)", [(q,) for q in set(queries)])
        item_idx = self._lookup("grank_items", "item", {c.item for c in clicks})
        query_idx = self._lookup("grank_queries", "terms", set(queries))
        db.executemany(
            "INSERT INTO grank_clicks VALUES (?, ?, ?, 1) ON CONFLICT (query, item, node) DO UPDATE SET count = count + 1",
            [(query_idx[q], item_idx[c.item], n) for c, q, n in zip(clicks, queries, nodes)],
        )
        self._add_clicked(list(dict.fromkeys((n, item_idx[c.item]) for c, n in zip(clicks, nodes))))
        self._add_terms(Counter((n, t) for c, n in zip(clicks, nodes) for t in c.terms))

    def _lookup(self, table: str, column: str, names: set[str]) -> dict[str, int]:
        return dict(
            self._db.execute(
                f"SELECT {column}, idx FROM {table} WHERE {column} IN (SELECT value FROM json_each(?))",
                (json.dumps(list(names)),),
            )
        )

    def _add_clicked(self, pairs: list[tuple[int, int]]) -> None:
        """Record which nodes clicked which items; keep |C_j| and km = |C_me & C_j| up to date."""
        db, me = self._db, self._me
        held = set(
            db.execute(
                "SELECT c.node, c.item FROM json_each(?) j JOIN grank_clicked c "
                "ON c.node = json_extract(j.value, '$[0]') AND c.item = json_extract(j.value, '$[1]')",
                (json.dumps(pairs),),
            )
        )
        new = [p for p in pairs if p not in held]
        db.executemany("INSERT INTO grank_clicked VALUES (?, ?)", new)
        for node, _ in new:
            self._size[node] += 1
        mine_new = {item for node, item in new if node == me}
        if mine_new:  # every peer that clicked one of them now shares one more item with us
            for (other,) in db.execute(
                "SELECT node FROM grank_clicked WHERE item IN (SELECT value FROM json_each(?)) AND node != ?",
                (json.dumps(list(mine_new)), me),
            ):
                self._km[other] += 1
        theirs = [(node, item) for node, item in new if node != me and item not in mine_new]
        if theirs:
            mine = {
                item
                for (item,) in db.execute(
                    "SELECT item FROM grank_clicked WHERE node = ? AND item IN (SELECT value FROM json_each(?))",
                    (me, json.dumps([item for _, item in theirs])),
                )
            }
            for node, item in theirs:
                if item in mine:
                    self._km[node] += 1

    def _add_terms(self, increments: Counter[tuple[int, str]]) -> None:
        """Count the query terms each node used; keep its TopK set and kt = |TopK_me & TopK_j|."""
        db = self._db
        db.executemany(
            "INSERT INTO grank_terms VALUES (?, ?, ?) ON CONFLICT (node, term) DO UPDATE SET count = count + excluded.count",
            [(n, t, k) for (n, t), k in increments.items()],
        )
        touched: defaultdict[int, dict[str, int]] = defaultdict(dict)
        for node, term, count in db.execute(
            "SELECT t.node, t.term, t.count FROM json_each(?) j JOIN grank_terms t "
            "ON t.node = json_extract(j.value, '$[0]') AND t.term = json_extract(j.value, '$[1]')",
            (json.dumps(list(increments)),),
        ):
            touched[node][term] = count
        changed, k = {}, self.params.top_k_terms
        for node, terms in touched.items():
            top = self._tops[node]
            outside = {t: c for t, c in terms.items() if t not in top}
            top.update((t, c) for t, c in terms.items() if t in top)  # members only grow: they stay
            if not outside:
                continue
            if len(top) >= k:  # only a term that overtakes the weakest member gets in
                floor = min(_term_key(entry) for entry in top.items())
                outside = {t: c for t, c in outside.items() if _term_key((t, c)) > floor}
                if not outside:
                    continue
            new_top = dict(heapq.nlargest(k, [*top.items(), *outside.items()], key=_term_key))
            if new_top.keys() != top.keys():
                changed[node] = new_top
            self._tops[node] = new_top
        if changed:
            self._save_tops(changed)
            if self._me in changed:
                self._refresh_kt()
            else:
                mine = self._tops[self._me].keys()
                for node, top in changed.items():
                    self._kt[node] = len(top.keys() & mine)

    def forget(self, nodes: Iterable[str]) -> None:
        """Take every row of ``nodes`` out (they were evicted); never our own.

        A few statements for all of them together, whatever their number: an eviction of
        hundreds of throwaway issuers must not hold the node up.
        """
        db = self._db
        gone = [self._index.pop(n) for n in dict.fromkeys(nodes) if n in self._index and n != self.me]
        if not gone:
            return
        batch = (json.dumps(gone),)
        theirs = "SELECT value FROM json_each(?)"
        touched = db.execute(
            f"SELECT item, SUM(count) FROM grank_clicks WHERE node IN ({theirs}) GROUP BY item", batch
        ).fetchall()
        queries = db.execute(f"SELECT DISTINCT query FROM grank_clicks WHERE node IN ({theirs})", batch).fetchall()
        db.executemany("UPDATE grank_items SET clicks = clicks - ? WHERE idx = ?", [(n, i) for i, n in touched])
        self.rows -= sum(n for _, n in touched)
        for table in ("grank_clicks", "grank_clicked", "grank_terms"):
            db.execute(f"DELETE FROM {table} WHERE node IN ({theirs})", batch)
        db.execute(f"DELETE FROM grank_nodes WHERE idx IN ({theirs})", batch)
        db.executemany("DELETE FROM grank_items WHERE idx = ? AND clicks <= 0", [(i,) for i, _ in touched])
        db.executemany(
            "DELETE FROM grank_queries WHERE idx = ? AND NOT EXISTS (SELECT 1 FROM grank_clicks WHERE query = ?)",
            [(q, q) for (q,) in queries],
        )
        for node in gone:
            del self._tops[node]
            self._kt[node] = self._km[node] = self._size[node] = 0.0
        self._free = sorted([*self._free, *gone], reverse=True)

    def _save_tops(self, tops: dict[int, dict[str, int]]) -> None:
        self._db.executemany(
            "UPDATE grank_nodes SET top = ? WHERE idx = ?", [(json.dumps(sorted(t)), n) for n, t in tops.items()]
        )

    def _refresh_kt(self) -> None:
        mine = self._tops[self._me].keys()
        for node, top in self._tops.items():
            self._kt[node] = len(mine & top.keys())

    # -- reading ---------------------------------------------------------------------------
    def similarities(self) -> np.ndarray:
        """S_i(n_j) for every node index, in [0, 1]; our own index holds 1 (index 0 is unused)."""
        n = max(self._index.values()) + 1
        me = self._me
        km, kt = self._km[:n], self._kt[:n]
        ku = self._size[me] + self._size[:n] - km
        raw = np.divide(kt + km * km, ku, out=np.zeros(n), where=ku > 0)
        raw[me] = 0.0
        peak = raw.max(initial=0.0)
        similarity = raw / peak if peak > 0 else raw
        similarity[me] = 1.0
        return similarity

    def similarity(self, node: str) -> float:
        idx = self._index.get(node)
        return 0.0 if idx is None else float(self.similarities()[idx])

    def _clicks(self, query: str | Iterable[str]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """For ``query``: the items clicked, and per (item, node) pair the item's position, node and count."""
        rows = self._db.execute(
            "SELECT i.item, c.node, c.count FROM grank_queries q JOIN grank_clicks c ON c.query = q.idx "
            "JOIN grank_items i ON i.idx = c.item WHERE q.terms = ? ORDER BY c.rowid",
            (" ".join(normalise(query)),),
        ).fetchall()
        names: dict[str, int] = {}
        positions = np.fromiter((names.setdefault(i, len(names)) for i, _, _ in rows), dtype=np.int64, count=len(rows))
        nodes = np.fromiter((n for _, n, _ in rows), dtype=np.int64, count=len(rows))
        counts = np.fromiter((c for _, _, c in rows), dtype=np.float64, count=len(rows))
        return list(names), positions, nodes, counts

    def scores(self, query: str | Iterable[str], *, local_only: bool = False) -> dict[str, float]:
        """R_i(k | Q) for every item clicked for Q (empty for an unseen query).

        ``local_only`` counts our own clicks alone (the local-only baseline).
        """
        items, positions, nodes, counts = self._clicks(query)
        if local_only:
            weight = (nodes == self._me).astype(np.float64)
        else:
            weight = self.similarities()[nodes] + self.params.isolation
        totals = np.bincount(positions, weights=counts * weight, minlength=len(items))
        return {item: float(totals[i]) for i, item in enumerate(items)}

    def counts(self, query: str | Iterable[str]) -> Counter[str]:
        """Clicks per item for ``query`` over every row seen, whoever clicked."""
        items, positions, _, counts = self._clicks(query)
        totals = np.bincount(positions, weights=counts, minlength=len(items))
        return Counter({item: int(totals[i]) for i, item in enumerate(items)})

    def popularity(self, items: Iterable[str]) -> Counter[str]:
        """Clicks on each of ``items`` over every row seen (the popular-items fallback)."""
        return Counter(
            dict(
                self._db.execute(
                    "SELECT item, clicks FROM grank_items WHERE item IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(items)),),
                )
            )
        )

    def clicked_for(self, query: str | Iterable[str]) -> bool:
        terms = " ".join(normalise(query))
        return self._db.execute("SELECT 1 FROM grank_queries WHERE terms = ?", (terms,)).fetchone() is not None


def _term_key(entry: tuple[str, int]) -> tuple[int, str]:
    """Most frequent first; ties go to the alphabetically last term (any fixed rule would do)."""
    term, count = entry
    return count, term


def full_scores(
    clicks: Sequence[Click], me: str, query: str | Iterable[str], params: GRankParams | None = None
) -> dict[str, float]:
    """R_i(k | Q) recomputed from the whole log, straight from the formulas (a reference)."""
    params = params or GRankParams()
    terms: defaultdict[str, Counter[str]] = defaultdict(Counter)
    clicked: defaultdict[str, set[str]] = defaultdict(set)
    for c in clicks:
        terms[c.node].update(c.terms)
        clicked[c.node].add(c.item)
    nodes = set(terms) | {me}

    def top(node: str) -> set[str]:
        return {t for t, _ in heapq.nlargest(params.top_k_terms, terms[node].items(), key=_term_key)}

    raw = {}
    for j in nodes - {me}:
        km = len(clicked[me] & clicked[j])
        ku = len(clicked[me] | clicked[j])
        raw[j] = (len(top(me) & top(j)) + km * km) / ku if ku else 0.0
    peak = max(raw.values(), default=0.0)
    similarity = {j: (s / peak if peak > 0 else s) for j, s in raw.items()} | {me: 1.0}
    q = normalise(query)
    scores: defaultdict[str, float] = defaultdict(float)
    for c in clicks:
        if c.terms == q:
            scores[c.item] += similarity[c.node] + params.isolation
    return dict(scores)


def rank(
    grank: GRank,
    candidates: Collection[str],
    query: str | Iterable[str],
    *,
    rng,
    p_explore: float = 0.5,
    limit: int = 10,
) -> list[str]:
    """G-Rank's result list for ``query``: ``candidates`` only, best first.

    The candidates are what the search found (a node's metadata matches, ``ItemIndex``;
    or the items a log says were shown). They are ordered by R(k | Q), then by clicks over
    every row seen, so a query nobody clicked for yet gets its candidates by popularity.
    An item clicked for Q that is not a candidate is never returned. With probability
    ``p_explore`` two random positions swap, so lower results get the chance of a click
    (paper: 0.5).
    """
    scores = grank.scores(query)
    return _finish(_ordered(candidates, scores, grank.popularity(candidates)), rng, p_explore, limit)


def _ordered(candidates: Iterable[str], scores: dict[str, float], popularity: Counter[str]) -> list[str]:
    return sorted(candidates, key=lambda k: (-scores.get(k, 0.0), -popularity[k], k))


def _finish(ranked: list[str], rng, p_explore: float, limit: int) -> list[str]:
    ranked = ranked[:limit]
    if len(ranked) >= 2 and rng.random() < p_explore:
        a, b = rng.sample(range(len(ranked)), 2)
        ranked[a], ranked[b] = ranked[b], ranked[a]
    return ranked


def rank_baseline(
    kind: str, grank: GRank, candidates: Collection[str], query: str | Iterable[str], *, rng, limit: int = 10
) -> list[str]:
    """The baselines G-Rank is compared with, over the same candidates and the same node's data.

    ``random``: the candidates in random order; ``popularity``: those clicked for the query
    first, each group by clicks over all rows seen; ``local``: as G-Rank but from this
    node's own clicks only.
    """
    if kind == "random":
        ranked = sorted(candidates)
        rng.shuffle(ranked)
        return ranked[:limit]
    if kind == "popularity":
        popularity = grank.popularity(candidates)
        clicked = grank.scores(query).keys()
        return _ordered(candidates, {k: float(popularity[k]) for k in clicked}, popularity)[:limit]
    if kind == "local":
        return _ordered(candidates, grank.scores(query, local_only=True), Counter())[:limit]
    raise ValueError(f"unknown baseline {kind!r}")
