"""The G-Rank experiment as a simulator workload: catalog, users, clicks and evaluation.

Users act only through each node's public ranking API (``search``, ``click``,
``ranking_by``), as a person at the CLI would. Ground truth (item popularity, relevance
per tag) exists only here, for scoring.

Metrics, every ``eval_every`` queries, per method (G-Rank and the random, popularity and
local-only baselines), over ``eval_nodes`` random nodes x every tag:
- ``positional_distance``: mean |position here - position in the global click ranking|
  over the global top 10 for that tag (absent items count as position 10), over 10; items
  tied on clicks share their tie group's span of positions (their order is arbitrary);
- ``top_item_rate``: share of result lists holding the tag's most clicked item so far;
- ``rr10``: reciprocal rank of the tag's most popular item by the hidden ground truth within
  the first 10 results, 0 when absent, averaged over the queries (ir_measures ``RR(rel=3)@10``,
  often called MRR@10; result lists hold at most 10 items);
- ``ndcg10``: nDCG@10 against graded relevance (3 for the most popular item of the tag,
  2 for the next two, 1 for the other items with the tag);
- ``attack_success`` (under attack only): share of the honest nodes' rankings for the attacked tag whose first
  result is the item the attackers push (and was not the honest users' favourite when the
  attack started: honest users who click the top result may adopt the pushed item, and
  that is the attack succeeding, not ending).
And, once per evaluation (they describe the gossiped log, not a ranking method):
- ``log_distance``: the paper's positional distance. Per node and tag, the items the node's
  log shows clicked for the tag by click count, then the tag's other items in catalog
  order, against the same list from every honest click; the sum over the items in both of
  |position difference| (items tied on clicks: 0 anywhere in their tie group's span),
  averaged over the evaluated nodes and tags;
- ``log_coverage``: share of all click rows issued so far that the evaluated nodes hold;
- ``log_coverage_min`` and ``nodes_below_10pct``: the least share any honest online node
  holds, and how many hold under 10% (the nodes gossip leaves behind); ``t`` is each
  evaluation's virtual time.
Only honest nodes query and are evaluated; the global click ranking counts honest clicks.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import trio

from edgeswarm.node.config import Section
from edgeswarm.node.ranking.click_log_store import ClickLogStore

from .determinism import derive_rng
from .host import SimHost
from .plots import finish, gaps
from .workload import Workload

METHODS = ("grank", "popularity", "random", "local")
SERIES = ("rr10", "ndcg10", "top_item_rate", "positional_distance", "attack_success")
LOG_SERIES = ("log_distance", "log_coverage")


class GRankSpec(Section):
    """The G-Rank experiment of Gold and Pouwelse (2023), generated.

    A catalog of ``items`` with 1 to ``max_tags`` of ``tags`` each and Zipf(``zipf``)
    popularity; every node holds a random ``local_share`` of it. After a warm-up of one
    random matching click per tag, ``queries`` single-tag queries come from random nodes,
    ``query_interval`` virtual seconds apart; every ``eval_every`` queries ``eval_nodes``
    random nodes rank every tag by each method. Click models: ``top`` clicks the first
    result (the paper's); ``cascade`` scans down, examining position p with probability
    ``cascade_decay``^p and clicking with probability 0.9 * relevance / 3.

    Attacks (the paper's), by the last ``attackers`` nodes, which run the same node code:
    ``targeted_sybil``: they come online at query ``attack_join`` and from query
    ``attack_start`` each issue ``attack_queries`` queries for the most queried tag, all
    clicking the same bottom result (the least popular item with that tag); ``inflation``: from ``attack_start`` each makes ``attack_queries``
    random clicks (random tag, random item); ``epic_sybil``: as targeted, but the attackers
    are there from the start (set ``attackers`` to 75% of the nodes for the paper's case).
    """

    items: Annotated[int, msgspec.Meta(ge=2, le=100_000)] = 256
    tags: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 39
    max_tags: Annotated[int, msgspec.Meta(ge=1, le=16)] = 3
    zipf: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    local_share: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.1
    queries: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    query_interval: Annotated[float, msgspec.Meta(gt=0)] = 0.1
    eval_every: Annotated[int, msgspec.Meta(ge=1)] = 100
    eval_nodes: Annotated[int, msgspec.Meta(ge=1)] = 5
    click_model: Literal["top", "cascade"] = "top"
    cascade_decay: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.7
    attack: Literal["none", "targeted_sybil", "inflation", "epic_sybil"] = "none"
    attackers: Annotated[int, msgspec.Meta(ge=0)] = 10
    attack_join: Annotated[int, msgspec.Meta(ge=0)] = 2500
    attack_start: Annotated[int, msgspec.Meta(ge=0)] = 5000
    attack_queries: Annotated[int, msgspec.Meta(ge=1)] = 100


class Catalog:
    """Generated items with tags and long-tailed popularity (the ground truth)."""

    def __init__(self, spec: GRankSpec, rng: random.Random) -> None:
        self.tags = [f"tag{t:03d}" for t in range(spec.tags)]
        self.items = [f"item{i:05d}" for i in range(spec.items)]
        # Zipf popularity over a random order of items
        order = rng.sample(self.items, len(self.items))
        self.weight = {item: 1.0 / (rank + 1) ** spec.zipf for rank, item in enumerate(order)}
        self.item_tags: dict[str, tuple[str, ...]] = {}
        for i, item in enumerate(self.items):
            first = self.tags[i % len(self.tags)]  # every tag has items
            extra = rng.sample(self.tags, rng.randint(0, spec.max_tags - 1))
            self.item_tags[item] = tuple(dict.fromkeys([first, *extra]))
        self.by_tag: dict[str, list[str]] = defaultdict(list)
        for item, tags in self.item_tags.items():
            for tag in tags:
                self.by_tag[tag].append(item)
        for tag in self.by_tag:
            self.by_tag[tag].sort(key=lambda k: (-self.weight[k], k))
        self.tag_weight = [sum(self.weight[k] for k in self.by_tag[t]) for t in self.tags]
        # graded ground truth per tag: 3 for the most popular item, 2 for the next two, 1 after
        self._relevance = {
            tag: {k: 3 if r == 0 else 2 if r < 3 else 1 for r, k in enumerate(items)}
            for tag, items in self.by_tag.items()
        }

    def relevance(self, tag: str) -> dict[str, int]:
        return self._relevance[tag]

    def entry(self, item: str) -> tuple[str, str, tuple[str, ...]]:
        return item, f"Release {item[4:]}", self.item_tags[item]


class GRankExperiment(Workload):
    """Drives the workload over the simulation's hosts and keeps the metric series."""

    name = "grank"
    Spec = GRankSpec

    def __init__(self, spec: GRankSpec, seed: int, hosts: list[SimHost]) -> None:
        super().__init__(spec, seed, hosts)
        hosts = self.hosts
        self._seed = seed
        self.rng = derive_rng(seed, "grank")
        self.catalog = Catalog(spec, derive_rng(seed, "grank-catalog"))
        self.global_clicks: defaultdict[str, Counter[str]] = defaultdict(Counter)
        metrics = SERIES if spec.attack != "none" else SERIES[:-1]  # attack_success only under attack
        self.series: dict[str, Any] = {"queries": [], **{m: defaultdict(list) for m in metrics}}
        self.log_series: dict[str, list[float]] = {m: [] for m in LOG_SERIES}
        count = min(spec.attackers, len(hosts) - 1) if spec.attack != "none" else 0
        self.attackers = hosts[len(hosts) - count :] if count else []
        self.honest = hosts[: len(hosts) - count]
        weights = self.catalog.tag_weight
        self.target = self.catalog.tags[max(range(len(weights)), key=weights.__getitem__)]  # most queried
        # coordinated Sybils push one item: the least popular one carrying the most queried tag
        self.pushed = self.catalog.by_tag[self.target][-1]
        self.favourite_before_attack: str | None = None
        self.clicks = 0
        self.rows_issued = 0
        self.issued = 0
        self.times: list[float] = []  # virtual seconds of each evaluation
        self.coverage_min: list[float | None] = []  # the least share of rows any honest online node holds
        self.behind: list[int] = []  # honest online nodes holding under 10% of the rows

    def starts_late(self, host: SimHost) -> bool:
        """Targeted Sybils come online only at query ``attack_join``."""
        return self.spec.attack == "targeted_sybil" and host in self.attackers

    async def run(self, nursery: trio.Nursery) -> None:
        spec, rng = self.spec, self.rng
        for host in self.hosts:
            self._stock(host)
        for tag in self.catalog.tags:  # warm-up: one random matching click per tag
            await self._query(rng.choice(self._online()), tag, warm_item=rng.choice(self.catalog.by_tag[tag]))
        # users query on their own schedule: a click's pull gossip runs on in the background
        async with trio.open_nursery() as users:
            for number in range(1, spec.queries + 1):
                if number == spec.attack_join and self.spec.attack == "targeted_sybil":
                    for host in self.attackers:
                        await host.start(nursery)
                        self._stock(host)
                if number == spec.attack_start:
                    self.favourite_before_attack = self._most_clicked(self.target)
                    for host in self.attackers:
                        users.start_soon(self._attack, host)
                tag = rng.choices(self.catalog.tags, self.catalog.tag_weight)[0]
                users.start_soon(self._query, rng.choice(self._online()), tag)
                self.issued = number
                if number % spec.eval_every == 0:
                    self._evaluate(number)
                await trio.sleep(spec.query_interval)
        self.done.set()

    def _stock(self, host: SimHost) -> None:
        """Give an online node its random share of the catalog."""
        if host.node is not None and host.node.ranking is not None:
            share = max(1, round(self.spec.local_share * len(self.catalog.items)))
            host.node.ranking.add_items(self.catalog.entry(k) for k in self.rng.sample(self.catalog.items, share))

    def _online(self) -> list[SimHost]:
        """Honest nodes that are up (attackers act on their own schedule)."""
        return [h for h in self.honest if h.node is not None and h.node.ranking is not None]

    async def _attack(self, host: SimHost) -> None:
        spec, rng = self.spec, derive_rng(self._seed, "attacker", host.index)
        for _ in range(spec.attack_queries):
            if host.node is None:
                return
            ranking = host.node.ranking
            if spec.attack == "inflation":
                tag, item = rng.choice(self.catalog.tags), rng.choice(self.catalog.items)
                ranking.search(tag)
                ranking.add_items([self.catalog.entry(item)], local=False)
            else:  # search the target tag and click the pushed item, a bottom result at best
                ranking.search(self.target, explore=False)
                ranking.add_items([self.catalog.entry(self.pushed)], local=False)
                item = self.pushed
            self.rows_issued += 1
            await ranking.click(item)
            await trio.sleep(spec.query_interval)

    async def _query(self, host: SimHost, tag: str, warm_item: str | None = None) -> None:
        if host.node is None:  # went offline since it was picked
            return
        ranking = host.node.ranking
        results = [r.item for r in ranking.search(tag)]
        if warm_item is not None:
            ranking.add_items([self.catalog.entry(warm_item)], local=False)
            choice = warm_item
        else:
            choice = self._choose(tag, results)
        if choice is None:
            return
        self.global_clicks[tag][choice] += 1
        self.clicks += 1
        self.rows_issued += 1
        await ranking.click(choice)

    def _choose(self, tag: str, results: list[str]) -> str | None:
        if not results:
            return None
        if self.spec.click_model == "top":
            return results[0]
        relevance = self.catalog.relevance(tag)
        for position, item in enumerate(results):
            # examined (cascade), then clicked by relevance: the second draw only for an examined item
            if (
                self.rng.random() < self.spec.cascade_decay**position
                and self.rng.random() < 0.9 * relevance.get(item, 0) / 3
            ):
                return item
        return None

    def _evaluate(self, number: int) -> None:
        import ir_measures
        from ir_measures import RR, nDCG

        hosts = self.rng.sample(self._online(), min(self.spec.eval_nodes, len(self._online())))
        honest_top = self.favourite_before_attack or self._most_clicked(self.target)
        qrels = [  # one query per (evaluated node, tag), judged by the same ground truth
            ir_measures.Qrel(f"{h}:{tag}", item, grade)
            for h in range(len(hosts))
            for tag in self.catalog.tags
            for item, grade in self.catalog.relevance(tag).items()
        ]
        self.series["queries"].append(number)
        for method in METHODS:
            run, distances, hits, hijacked = [], [], [], []
            for h, host in enumerate(hosts):
                for tag in self.catalog.tags:
                    ranked = host.node.ranking.ranking_by(method, tag)
                    query_id = f"{h}:{tag}"
                    run += [
                        ir_measures.ScoredDoc(query_id, item, float(len(ranked) - r)) for r, item in enumerate(ranked)
                    ]
                    top = self._most_clicked(tag)
                    hits.append(top is None or top in ranked)
                    distances.append(self._distance(tag, ranked))
                    if tag == self.target:
                        hijacked.append(bool(ranked) and ranked[0] == self.pushed != honest_top)
            scores = ir_measures.calc_aggregate([RR(rel=3) @ 10, nDCG @ 10], qrels, run)
            self.series["rr10"][method].append(round(scores[RR(rel=3) @ 10], 6))
            self.series["ndcg10"][method].append(round(scores[nDCG @ 10], 6))
            self.series["top_item_rate"][method].append(round(sum(hits) / len(hits), 6))
            self.series["positional_distance"][method].append(round(sum(distances) / len(distances), 6))
            if "attack_success" in self.series:
                self.series["attack_success"][method].append(
                    round(sum(hijacked) / len(hijacked), 6) if hijacked else 0.0
                )
        log_distances = [
            self._log_distance(tag, h.node.ranking.click_counts(tag)) for h in hosts for tag in self.catalog.tags
        ]
        coverage = [ClickLogStore(h.store).click_row_count() / max(1, self.rows_issued) for h in hosts]
        self.log_series["log_distance"].append(round(sum(log_distances) / len(log_distances), 6))
        self.log_series["log_coverage"].append(round(sum(coverage) / len(coverage), 6))
        # every honest online node, not only the evaluated ones: who is left behind
        everyone = [ClickLogStore(h.store).click_row_count() / max(1, self.rows_issued) for h in self._online()]
        self.times.append(round(trio.current_time(), 3))
        self.coverage_min.append(round(min(everyone), 6) if everyone else None)
        self.behind.append(sum(c < 0.1 for c in everyone))

    def _most_clicked(self, tag: str) -> str | None:
        """The honest users' most clicked item for ``tag``."""
        clicks = self.global_clicks[tag]
        return min(clicks, key=lambda k: (-clicks[k], k)) if clicks else None

    def _distance(self, tag: str, ranked: list[str]) -> float:
        """Mean distance of the global top 10 from their global positions, over 10.

        Items with equal click counts have no true order between them, so an item placed
        anywhere inside its tie group's span of positions is at distance 0.
        """
        order = sorted(self.global_clicks[tag].items(), key=lambda e: (-e[1], e[0]))
        if not order:
            return 0.0
        span = _tie_spans(order)
        position = {k: r for r, k in enumerate(ranked[:10])}
        truth = order[:10]
        return sum(_off(position.get(k, 10), span[count]) for k, count in truth) / len(truth) / 10

    def _log_distance(self, tag: str, counts: Counter[str]) -> int:
        return log_distance(self.global_clicks[tag], counts, self.catalog.by_tag[tag])

    def report(self) -> dict[str, Any]:
        """Final values per metric and method, and the series, for ``report.json``."""
        final = {
            metric: {m: (values[m][-1] if values[m] else None) for m in METHODS}
            for metric, values in self.series.items()
            if metric != "queries"
        }
        rows = [ClickLogStore(h.store).click_row_count() for h in self.hosts]
        gossip = [h.counters().get("bytes_in", {}) for h in self.hosts]
        final["click_log_rows_per_node"] = round(sum(rows) / len(rows), 1)
        final["gossip_bytes_per_node"] = round(
            sum(v for b in gossip for kind, v in b.items() if kind.startswith("ranking.")) / len(gossip)
        )
        for metric, values in self.log_series.items():
            final[metric] = values[-1] if values else None
        final["log_coverage_min"] = self.coverage_min[-1] if self.coverage_min else None
        final["nodes_below_10pct"] = self.behind[-1] if self.behind else None
        final["clicks"] = self.clicks
        final["queries"] = self.issued
        series = {
            "queries": self.series["queries"],
            "t": self.times,
            "log_coverage_min": self.coverage_min,
            "nodes_below_10pct": self.behind,
        }
        for metric, values in self.series.items():
            if metric != "queries":
                series[metric] = {m: values[m] for m in METHODS}
        series.update(self.log_series)
        return {"final": final, "series": series}

    @staticmethod
    def plot(report: dict[str, Any], path: Path) -> Path:
        """One panel per metric, one line per method, over the queries issued (as the paper's)."""
        import matplotlib.pyplot as plt

        series = report["grank_series"]
        panels = [
            ("positional_distance", "positional distance (0 = global click ranking)"),
            ("top_item_rate", "results holding the most clicked item"),
            ("rr10", "RR@10 of the most popular item"),
            ("ndcg10", "nDCG@10"),
        ]
        attacked = "attack_success" in series
        if attacked:
            panels.insert(2, ("attack_success", "honest results topped by the attackers' item"))
        fig, axes = plt.subplots(2, 3, figsize=(15, 7), sharex=True)
        for ax in axes.flat[len(panels) + 1 :]:
            ax.set_visible(False)
        for ax, (metric, title) in zip(axes.flat, panels):
            for method, values in series[metric].items():
                ax.plot(series["queries"], values, label=method, linewidth=2 if method == "grank" else 1)
            ax.set_title(title, fontsize=10)
            ax.set_ylim(0, 1.05)
        log = axes.flat[len(panels)]  # the gossiped log itself, as the paper plots it
        log.plot(series["queries"], series["log_distance"], color="black", label="the paper's distance (left)")
        log.set_title("node's log vs all clicks: paper's distance, share held", fontsize=10)
        held = log.twinx()
        held.plot(
            series["queries"], series["log_coverage"], color="tab:green", linestyle="--", label="rows held (right)"
        )
        held.plot(
            series["queries"],
            gaps(series["log_coverage_min"]),
            color="tab:olive",
            linestyle=":",
            label="rows held, least node (right)",
        )
        held.set_ylim(0, 1.05)
        log.legend(handles=log.get_lines() + held.get_lines(), fontsize=8)
        for ax in axes[-1]:
            ax.set_xlabel("queries")
        axes[0][0].legend(fontsize=8)
        return finish(fig, report, path)

    @staticmethod
    def summary(metrics: dict[str, Any]) -> list[tuple[str, str]]:
        rows = [(f"RR@10 {method}", _fixed(value)) for method, value in metrics.get("rr10", {}).items()]
        rows += [
            (f"positional distance {method}", _fixed(value))
            for method, value in metrics.get("positional_distance", {}).items()
        ]
        rows += [
            (name.replace("_", " "), _fixed(metrics[name])) for name in LOG_SERIES if metrics.get(name) is not None
        ]
        if metrics.get("log_coverage_min") is not None:
            rows.append(("log coverage, least node", _fixed(metrics["log_coverage_min"])))
            rows.append(("nodes holding < 10% of rows", str(metrics["nodes_below_10pct"])))
        return rows


def _fixed(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def log_distance(truth: Counter[str], view: Counter[str], tagged: list[str]) -> int:
    """The paper's positional distance of one node's view of a tag's clicks from the truth.

    Each side lists the items clicked for the tag by click count, then the tag's other items
    in catalog order; the distance sums |position difference| over the items on both lists.
    Items tied on clicks in the truth have no order between them: anywhere in their tie
    group's span is distance 0.
    """

    def listing(clicks: Counter[str]) -> list[tuple[str, int]]:
        clicked = sorted(clicks.items(), key=lambda e: (-e[1], e[0]))
        return clicked + [(k, 0) for k in sorted(tagged) if k not in clicks]

    ordered = listing(truth)
    span = _tie_spans(ordered)
    count = dict(ordered)
    return sum(_off(p, span[count[k]]) for p, (k, _) in enumerate(listing(view)) if k in count)


def _tie_spans(order: list[tuple[str, int]]) -> dict[int, tuple[int, int]]:
    """First and last position of each click count in a list sorted by count."""
    span: dict[int, tuple[int, int]] = {}
    for r, (_, count) in enumerate(order):
        span[count] = (span.get(count, (r, r))[0], r)
    return span


def _off(position: int, span: tuple[int, int]) -> int:
    """How far ``position`` lies outside ``span`` (0 inside it)."""
    lo, hi = span
    return 0 if lo <= position <= hi else min(abs(position - lo), abs(position - hi))


WORKLOAD = GRankExperiment
