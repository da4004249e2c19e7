"""Ranking latency per query at 1k, 10k and 100k click-log rows (target: p50 < 2 ms at 100k).

The log is generated like the simulator's workload (100 nodes, 256 items, 39 tags, Zipf
popularity); each query is a full ``rank`` (G-Rank scores, metadata matches, ordering)
without exploration. Beside it, the same queries by the global-popularity baseline, the
cheapest ranking one could ship, as the reference; the ratio is printed.

    python benchmarks/grank_rank.py [--sizes 1000 10000 100000] [--queries 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from functools import partial

from edgeswarm.learning.grank import Click, GRank, ItemIndex, rank, rank_baseline


def build(rows: int, rng: random.Random) -> tuple[GRank, ItemIndex, list[str]]:
    tags = [f"tag{t:03d}" for t in range(39)]
    items = [f"item{i:05d}" for i in range(256)]
    weights = [1.0 / (r + 1) for r in range(len(items))]
    item_tags = {k: [tags[i % 39], *rng.sample(tags, rng.randint(0, 2))] for i, k in enumerate(items)}
    by_tag: dict[str, list[str]] = {t: [k for k in items if t in item_tags[k]] for t in tags}
    nodes = [f"node{n:03d}" for n in range(100)]
    grank = GRank(nodes[0])
    index = ItemIndex()
    for k in rng.sample(items, 26):
        index.add(k, f"Release {k}", item_tags[k])
    for _ in range(rows):
        tag = rng.choice(tags)
        candidates = by_tag[tag]
        item = rng.choices(candidates, [weights[items.index(k)] for k in candidates])[0]
        grank.add(Click(rng.choice(nodes), (tag,), item))
    return grank, index, tags


def latencies(fn, tags: list[str], queries: int, rng: random.Random) -> list[float]:
    out = []
    for _ in range(queries):
        tag = rng.choice(tags)
        start = time.perf_counter()
        fn(tag)
        out.append((time.perf_counter() - start) * 1000)
    return out


def grank_query(grank: GRank, index: ItemIndex, rng: random.Random, tag: str):
    return rank(grank, index.matches(tag), tag, rng=rng, p_explore=0.0)


def popularity_query(grank: GRank, index: ItemIndex, rng: random.Random, tag: str):
    return rank_baseline("popularity", grank, index.matches(tag), tag, rng=rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    last = None
    for rows in args.sizes:
        rng = random.Random(rows)
        start = time.perf_counter()
        grank, index, tags = build(rows, rng)
        build_s = time.perf_counter() - start
        ours = latencies(partial(grank_query, grank, index, rng), tags, args.queries, rng)
        base = latencies(partial(popularity_query, grank, index, rng), tags, args.queries, rng)
        p50, p99 = statistics.median(ours), statistics.quantiles(ours, n=100)[98]
        b50 = statistics.median(base)
        print(
            f"rows={rows:>7} build={build_s:6.2f}s ({build_s / rows * 1e6:.1f} us/row) "
            f"grank p50={p50:.3f} ms p99={p99:.3f} ms | popularity p50={b50:.3f} ms | ratio={p50 / b50:.2f}"
        )
        last = (rows, p50, p99, b50)
    rows, p50, p99, b50 = last
    print(
        f"rows={rows} grank_p50_ms={p50:.3f} (target<2) grank_p99_ms={p99:.3f} popularity_p50_ms={b50:.3f} "
        f"ratio={p50 / b50:.2f}"
    )


if __name__ == "__main__":
    main()
