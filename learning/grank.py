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
pairs clicked for that query. ``full_scores`` recomputes from scratch (for tests).
"""

from __future__ import annotations

import functools
import heapq
import re
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


@functools.lru_cache(maxsize=65536)
def _normalise(text: str) -> tuple[str, ...]:
    """Memoised: the same few queries come back in every row."""
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


class _Node:
    __slots__ = ("clicked", "index", "terms", "top")

    def __init__(self, index: int) -> None:
        self.index = index
        self.terms: Counter[str] = Counter()
        self.top: frozenset[str] = frozenset()
        self.clicked: set[str] = set()


class _QueryClicks:
    """(item, node) -> click count for one query, as growable parallel arrays."""

    __slots__ = ("counts", "items", "nodes", "pairs", "size")

    def __init__(self) -> None:
        self.pairs: dict[tuple[int, int], int] = {}
        self.items = np.zeros(16, dtype=np.int64)
        self.nodes = np.zeros(16, dtype=np.int64)
        self.counts = np.zeros(16, dtype=np.float64)
        self.size = 0

    def add(self, item: int, node: int) -> None:
        slot = self.pairs.get((item, node))
        if slot is None:
            if self.size == len(self.items):
                self.items, self.nodes, self.counts = (
                    np.resize(a, 2 * len(a)) for a in (self.items, self.nodes, self.counts)
                )
            slot = self.pairs[(item, node)] = self.size
            self.items[slot], self.nodes[slot], self.counts[slot] = item, node, 0.0
            self.size += 1
        self.counts[slot] += 1.0


class GRank:
    """One node's G-Rank state, updated row by row.

    Parameters
    ----------
    me : str
        This node's id (its own clicks count with similarity 1).
    params : GRankParams (default: GRankParams())
    """

    def __init__(self, me: str, params: GRankParams | None = None) -> None:
        self.me = me
        self.params = params or GRankParams()
        self._nodes: dict[str, _Node] = {}
        self._items: dict[str, int] = {}
        self._item_names: list[str] = []
        self._clickers: defaultdict[str, set[str]] = defaultdict(set)  # item -> nodes
        self._queries: dict[tuple[str, ...], _QueryClicks] = {}
        self._popularity: Counter[str] = Counter()
        # per node index, for the vectorised similarity: kt, km, |C_j|
        self._kt = np.zeros(16)
        self._km = np.zeros(16)
        self._size = np.zeros(16)
        self.rows = 0
        self._node(me)

    # -- updates ---------------------------------------------------------------------------
    def _node(self, node: str) -> _Node:
        state = self._nodes.get(node)
        if state is None:
            state = self._nodes[node] = _Node(len(self._nodes))
            if state.index == len(self._kt):
                self._kt, self._km, self._size = (np.resize(a, 2 * len(a)) for a in (self._kt, self._km, self._size))
            self._kt[state.index] = self._km[state.index] = self._size[state.index] = 0.0
        return state

    def _item(self, item: str) -> int:
        index = self._items.get(item)
        if index is None:
            index = self._items[item] = len(self._item_names)
            self._item_names.append(item)
        return index

    def add(self, click: Click) -> None:
        """Take one click-log row into account (each row once; the caller dedupes)."""
        self.rows += 1
        node = self._node(click.node)
        me = self._nodes[self.me]
        self._queries.setdefault(click.terms, _QueryClicks()).add(self._item(click.item), node.index)
        self._popularity[click.item] += 1
        if click.item not in node.clicked:
            node.clicked.add(click.item)
            self._size[node.index] = len(node.clicked)
            if node is me:  # every peer that clicked it now shares one more item with us
                for other in self._clickers[click.item]:
                    self._km[self._nodes[other].index] += 1
            elif click.item in me.clicked:
                self._km[node.index] += 1
            self._clickers[click.item].add(click.node)
        node.terms.update(click.terms)
        outside = [t for t in click.terms if t not in node.top]
        if not outside:
            return  # only a term outside the TopK set can change which terms are in it
        if len(node.top) >= self.params.top_k_terms:
            floor = min(_term_key((t, node.terms[t])) for t in node.top)
            if all(_term_key((t, node.terms[t])) < floor for t in outside):
                return  # and only by overtaking the weakest term in it
        top = frozenset(t for t, _ in heapq.nlargest(self.params.top_k_terms, node.terms.items(), key=_term_key))
        if top != node.top:
            node.top = top
            if node is me:
                for other in self._nodes.values():
                    self._kt[other.index] = len(me.top & other.top)
            else:
                self._kt[node.index] = len(me.top & top)

    # -- reading ---------------------------------------------------------------------------
    def similarities(self) -> np.ndarray:
        """S_i(n_j) for every node index, in [0, 1]; our own index holds 1."""
        n = len(self._nodes)
        me = self._nodes[self.me].index
        km, kt = self._km[:n], self._kt[:n]
        ku = self._size[me] + self._size[:n] - km
        raw = np.divide(kt + km * km, ku, out=np.zeros(n), where=ku > 0)
        raw[me] = 0.0
        peak = raw.max(initial=0.0)
        similarity = raw / peak if peak > 0 else raw
        similarity[me] = 1.0
        return similarity

    def similarity(self, node: str) -> float:
        state = self._nodes.get(node)
        return 0.0 if state is None else float(self.similarities()[state.index])

    def scores(self, query: str | Iterable[str], *, local_only: bool = False) -> dict[str, float]:
        """R_i(k | Q) for every item clicked for Q (empty for an unseen query).

        ``local_only`` counts our own clicks alone (the local-only baseline).
        """
        clicks = self._queries.get(normalise(query))
        if clicks is None:
            return {}
        n = clicks.size
        if local_only:
            weight = (clicks.nodes[:n] == self._nodes[self.me].index).astype(np.float64)
        else:
            weight = self.similarities()[clicks.nodes[:n]] + self.params.isolation
        totals = np.bincount(clicks.items[:n], weights=clicks.counts[:n] * weight, minlength=len(self._item_names))
        return {self._item_names[i]: float(totals[i]) for i in np.unique(clicks.items[:n])}

    def counts(self, query: str | Iterable[str]) -> Counter[str]:
        """Clicks per item for ``query`` over every row seen, whoever clicked."""
        clicks = self._queries.get(normalise(query))
        if clicks is None:
            return Counter()
        n = clicks.size
        totals = np.bincount(clicks.items[:n], weights=clicks.counts[:n], minlength=len(self._item_names))
        return Counter({self._item_names[i]: int(totals[i]) for i in np.unique(clicks.items[:n])})

    def popularity(self) -> Counter[str]:
        """Clicks per item over every row seen (the popular-items fallback)."""
        return Counter(self._popularity)

    def clicked_for(self, query: str | Iterable[str]) -> bool:
        return normalise(query) in self._queries


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


class ItemIndex:
    """Items a node can offer, by the words of their title and tags (for metadata matches)."""

    def __init__(self) -> None:
        self._postings: defaultdict[str, set[str]] = defaultdict(set)
        self._terms: dict[str, frozenset[str]] = {}

    def add(self, item: str, title: str, tags: Iterable[str]) -> None:
        terms = frozenset(normalise(title)) | frozenset(normalise(tags))
        for term in self._terms.get(item, frozenset()) - terms:
            self._postings[term].discard(item)
        self._terms[item] = terms
        for term in terms:
            self._postings[term].add(item)

    def __contains__(self, item: object) -> bool:
        return item in self._terms

    def __len__(self) -> int:
        return len(self._terms)

    def matches(self, query: str | Iterable[str]) -> set[str]:
        """Items whose metadata holds every query term."""
        terms = normalise(query)
        if not terms:
            return set()
        postings = sorted((self._postings.get(t, set()) for t in terms), key=len)
        return set.intersection(*postings) if postings[0] else set()


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
    return _finish(_ordered(candidates, scores, grank.popularity()), rng, p_explore, limit)


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
        popularity = grank.popularity()
        return _ordered(candidates, {k: float(popularity[k]) for k in grank.scores(query)}, popularity)[:limit]
    if kind == "local":
        return _ordered(candidates, grank.scores(query, local_only=True), Counter())[:limit]
    raise ValueError(f"unknown baseline {kind!r}")
