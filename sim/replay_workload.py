"""G-Rank on a real click log: replay it over the swarm, then score the held-out clicks.

The log (a CSV, format in ``sim.click_log_file``) is split per user by time: each user's
last ``holdout`` share of clicks is held out. Users are mapped to nodes in order of their
first click, round-robin (user k on node k mod nodes), and every node's catalog holds each
item clicked in the training part, tagged with the words of the queries it was clicked
for (the only metadata a log has). The training clicks are then replayed through each
node's public ranking API (``search``, ``click``) at their logged times, mapped linearly
onto ``replay_seconds`` virtual seconds, so the bursts and silences of the log survive;
gossip (after clicks and in the background) spreads them. After ``settle_seconds`` more,
each held-out click is a query on its user's node: G-Rank and the popularity, random and
local baselines rank the candidates (the log's shown items when the row has them, else the
node's catalog matches), and ir_measures scores the lists against the clicked item:

- ``rr10``: reciprocal rank of the clicked item within the first 10, 0 when absent (RR@10);
- ``ndcg10``: nDCG@10 with the clicked item as the one relevant item;
- ``success10``: share of held-out clicks whose item is in the first 10 (Success@10);
- ``reachable``: share whose item is among the candidates at all (a ceiling on Success@10
  for every method: an item never clicked before cannot be found from a log).

Every ``sample_every`` virtual seconds: the share of the replayed rows each online node
holds (mean, least node, nodes under 10%), which shows what gossip leaves behind.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any

import msgspec
import trio

from edgeswarm.learning.grank import normalise
from edgeswarm.node.config import Section
from edgeswarm.node.ranking.click_log_store import ClickLogStore

from .click_log_file import ClickLogError, LoggedClick, read_click_log, split_by_time
from .host import SimHost
from .plots import finish, gaps
from .workload import Workload

METHODS = ("grank", "popularity", "random", "local")
MEASURES = ("rr10", "ndcg10", "success10")


class ReplaySpec(Section):
    """A click log replayed over the swarm (see the module's docstring).

    ``log`` is a path to the CSV, relative to the scenario file; ``users`` > 0 keeps only the
    first that many users by first click.
    """

    log: str
    holdout: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.2
    users: Annotated[int, msgspec.Meta(ge=0)] = 0
    replay_seconds: Annotated[float, msgspec.Meta(gt=0)] = 1800.0
    settle_seconds: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    sample_every: Annotated[float, msgspec.Meta(gt=0)] = 60.0


def load(spec: ReplaySpec) -> tuple[list[LoggedClick], list[LoggedClick]]:
    """(training, held out) clicks of the spec's log, for its first ``users`` users."""
    clicks = read_click_log(Path(spec.log))
    if spec.users:
        first: dict[str, None] = {}
        for click in sorted(clicks, key=lambda c: c.time):
            first.setdefault(click.user)
        kept = set(list(first)[: spec.users])
        clicks = [c for c in clicks if c.user in kept]
    train, test = split_by_time(clicks, spec.holdout)
    if not train:
        raise ClickLogError(f"{spec.log}: nothing left to replay after holding out {spec.holdout:.0%} per user")
    return train, test


class ReplayExperiment(Workload):
    """Replays the training clicks, samples coverage, then scores the held-out clicks."""

    name = "replay"
    Spec = ReplaySpec

    def __init__(self, spec: ReplaySpec, seed: int, hosts: list[SimHost]) -> None:
        super().__init__(spec, seed, hosts)
        self.train, self.test = load(spec)
        first: dict[str, None] = {}
        for click in self.train + self.test:
            first.setdefault(click.user)
        self.node_of = {user: self.hosts[k % len(self.hosts)] for k, user in enumerate(first)}
        words: defaultdict[str, set[str]] = defaultdict(set)
        for click in self.train:
            words[click.item].update(normalise(click.query))
        self.catalog = [(item, "", tuple(sorted(terms))) for item, terms in words.items()]
        self.replayed = 0
        self.missed_offline = 0
        self.samples: dict[str, list] = {"t": [], "log_coverage": [], "log_coverage_min": [], "nodes_below_10pct": []}
        self.final: dict[str, Any] = {}

    @classmethod
    def resolve_paths(cls, spec: ReplaySpec, folder: Path) -> ReplaySpec:
        return msgspec.structs.replace(spec, log=str((folder / spec.log).resolve()))

    @classmethod
    def check(cls, spec: ReplaySpec, nodes: int) -> str | None:
        try:
            load(spec)
        except ClickLogError as e:
            return str(e)
        return None

    async def run(self, nursery: trio.Nursery) -> None:
        spec = self.spec
        for host in self.hosts:
            self._stock(host)
        first, last = self.train[0].time, self.train[-1].time
        scale = spec.replay_seconds / (last - first) if last > first else 0.0
        start = trio.current_time()
        async with trio.open_nursery() as users:
            users.start_soon(self._sample)
            for click in self.train:
                await trio.sleep_until(start + (click.time - first) * scale)
                users.start_soon(self._click, self.node_of[click.user], click)
            await trio.sleep(spec.settle_seconds)
            users.cancel_scope.cancel()
        self._sample_once()
        self._score()
        self.done.set()

    def _stock(self, host: SimHost) -> None:
        """Give an online node the catalog (once: its store keeps it across restarts)."""
        if host.node is not None and host.node.ranking is not None and not len(host.node.ranking.index):
            host.node.ranking.add_items(self.catalog)

    async def _click(self, host: SimHost, click: LoggedClick) -> None:
        if host.node is None or host.node.ranking is None:  # the user's device is off: the click is lost
            self.missed_offline += 1
            return
        self._stock(host)  # it may have been offline when the replay began
        self.replayed += 1
        ranking = host.node.ranking
        ranking.search(click.query, explore=False)  # the click cites this search, as at the CLI
        await ranking.click(click.item)

    async def _sample(self) -> None:
        while True:
            self._sample_once()
            await trio.sleep(self.spec.sample_every)

    def _sample_once(self) -> None:
        held = [
            ClickLogStore(h.store).click_row_count() / max(1, self.replayed) for h in self.hosts if h.node is not None
        ]
        self.samples["t"].append(round(trio.current_time(), 3))
        self.samples["log_coverage"].append(round(sum(held) / len(held), 6) if held else None)
        self.samples["log_coverage_min"].append(round(min(held), 6) if held else None)
        self.samples["nodes_below_10pct"].append(sum(c < 0.1 for c in held))

    def _score(self) -> None:
        import ir_measures
        from ir_measures import RR, Success, nDCG

        measures = {"rr10": RR @ 10, "ndcg10": nDCG @ 10, "success10": Success @ 10}
        qrels, runs, reachable, offline = [], defaultdict(list), 0, 0
        for number, click in enumerate(self.test):
            host = self.node_of[click.user]
            if host.node is None or host.node.ranking is None:
                offline += 1
                continue
            ranking, query_id = host.node.ranking, str(number)
            candidates = set(click.shown) if click.shown else ranking.index.matches(click.query)
            reachable += click.item in candidates
            qrels.append(ir_measures.Qrel(query_id, click.item, 1))
            for method in METHODS:
                ranked = ranking.ranking_by(method, click.query, candidates)
                runs[method] += [
                    ir_measures.ScoredDoc(query_id, k, float(len(ranked) - r)) for r, k in enumerate(ranked)
                ]
        final: dict[str, Any] = {name: {} for name in measures}
        for method in METHODS:
            # a query with no results still counts (ir_measures scores it 0)
            scores = ir_measures.calc_aggregate(list(measures.values()), qrels, runs[method]) if qrels else {}
            for name, measure in measures.items():
                final[name][method] = round(scores[measure], 6) if qrels else None
        final["reachable"] = round(reachable / len(qrels), 6) if qrels else None
        final["held_out"] = len(self.test)
        final["held_out_scored"] = len(qrels)
        final["held_out_offline"] = offline
        self.final = final

    def report(self) -> dict[str, Any]:
        final = dict(self.final)
        final["users"] = len(self.node_of)
        final["train_clicks"] = len(self.train)
        final["replayed"] = self.replayed
        final["missed_offline"] = self.missed_offline
        for name in ("log_coverage", "log_coverage_min", "nodes_below_10pct"):
            final[name] = self.samples[name][-1] if self.samples[name] else None
        gossip = [h.counters().get("bytes_in", {}) for h in self.hosts]
        final["gossip_bytes_per_node"] = round(
            sum(v for b in gossip for kind, v in b.items() if kind.startswith("ranking.")) / len(gossip)
        )
        return {"final": final, "series": self.samples}

    @staticmethod
    def plot(report: dict[str, Any], path: Path) -> Path:
        """Rows held over virtual time (mean and least node), and each method's scores."""
        import matplotlib.pyplot as plt

        series, metrics = report["replay_series"], report["metrics"]
        fig, (held, scores) = plt.subplots(1, 2, figsize=(12, 4.5))
        held.plot(series["t"], gaps(series["log_coverage"]), label="mean node")
        held.plot(series["t"], gaps(series["log_coverage_min"]), linestyle=":", label="least node")
        held.set_title("share of the replayed rows each node holds", fontsize=10)
        held.set_xlabel("virtual seconds")
        held.set_ylim(0, 1.05)
        held.legend(fontsize=8)
        width = 0.8 / len(METHODS)
        for m, method in enumerate(METHODS):
            values = [metrics[name][method] or 0.0 for name in MEASURES]
            scores.bar([i + m * width for i in range(len(MEASURES))], values, width, label=method)
        scores.set_xticks([i + 0.4 - width / 2 for i in range(len(MEASURES))], ["RR@10", "nDCG@10", "Success@10"])
        scores.set_title("held-out clicks", fontsize=10)
        scores.set_ylim(0, 1.05)
        scores.legend(fontsize=8)
        return finish(fig, report, path)

    @staticmethod
    def summary(metrics: dict[str, Any]) -> list[tuple[str, str]]:
        rows = []
        for name, label in (("rr10", "RR@10"), ("ndcg10", "nDCG@10"), ("success10", "Success@10")):
            values = metrics.get(name, {})
            rows.append(
                (f"{label}: grank / popularity / random / local", " / ".join(_fixed(values.get(m)) for m in METHODS))
            )
        rows.append(("held-out clicks scored", f"{metrics.get('held_out_scored')} of {metrics.get('held_out')}"))
        rows.append(("item among the candidates", _fixed(metrics.get("reachable"))))
        if metrics.get("log_coverage_min") is not None:
            rows.append(
                (
                    "rows held, mean / least node",
                    f"{_fixed(metrics['log_coverage'])} / {_fixed(metrics['log_coverage_min'])}",
                )
            )
            rows.append(("nodes holding < 10% of rows", str(metrics["nodes_below_10pct"])))
        return rows


def _fixed(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


WORKLOAD = ReplayExperiment
