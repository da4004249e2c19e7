"""A small click log with the shape of real ones, generated: the replay's shipped workload.

Real logs are bursty and personal, and public ones may not be redistributed with the
project, so ``configs/sim/data/clicks-small.csv`` is generated here (reproducibly, by seed)
with the traits that matter to G-Rank:

- **taste communities**: users fall into ``communities`` groups; each group prefers its own
  share of the catalog (x ``boost``) on top of a shared Zipf popularity, and asks its own
  favourite queries (Dirichlet(0.3) weights), so similar users predict each other better
  than the crowd does;
- **bursty, heavy-tailed activity**: sessions per user are Pareto distributed (most users
  click a few times, a few click a lot), each session is a burst of clicks seconds to
  minutes apart, and each user is active only within their own span of the 30 days, so many
  stop clicking early (what background anti-entropy is for);
- queries are one or two words; an item matches a query when its tags hold every word.

    python -m edgeswarm.sim.synthetic_click_log configs/sim/data/clicks-small.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

START = 1_704_067_200  # 2024-01-01T00:00:00Z
DAY = 86_400.0
WORDS = (
    "jazz",
    "rock",
    "folk",
    "blues",
    "metal",
    "soul",
    "punk",
    "disco",
    "techno",
    "opera",
    "reggae",
    "swing",
    "ambient",
    "gospel",
    "funk",
    "grunge",
    "salsa",
    "tango",
    "house",
    "indie",
)


def generate(
    *, seed: int = 7, users: int = 100, items: int = 300, communities: int = 5, boost: float = 8.0, days: float = 30.0
) -> list[tuple[str, int, str, str]]:
    """Rows ``(user, unix seconds, query, item)`` in time order."""
    rng = np.random.default_rng(seed)
    tags = [rng.choice(len(WORDS), size=rng.integers(1, 4), replace=False) for _ in range(items)]
    single = [(w,) for w in range(len(WORDS))]
    pairs = sorted({tuple(sorted(t[:2])) for t in tags if len(t) >= 2})
    queries = single + [pairs[i] for i in rng.choice(len(pairs), size=min(10, len(pairs)), replace=False)]
    matching = [np.array([i for i, t in enumerate(tags) if set(q) <= set(t)]) for q in queries]
    popularity = 1.0 / (1.0 + rng.permutation(items)) ** 0.8
    taste = np.ones((communities, items))
    for c in range(communities):
        taste[c, rng.choice(items, size=items // communities, replace=False)] = boost
    asks = rng.dirichlet(np.full(len(queries), 0.3), size=communities)
    rows = []
    for u in range(users):
        community = u % communities
        sessions = min(60, int(4 * (rng.pareto(1.2) + 1)))
        begin = rng.uniform(0, days * 0.8) * DAY
        span = rng.exponential(days * 0.3) * DAY
        for start in np.sort(rng.uniform(begin, min(days * DAY, begin + span), size=sessions)):
            t = start
            for _ in range(rng.geometric(0.35)):
                q = rng.choice(len(queries), p=asks[community])
                pool = matching[q]
                weight = popularity[pool] * taste[community, pool]
                item = pool[rng.choice(len(pool), p=weight / weight.sum())]
                rows.append((f"u{u:03d}", int(START + t), " ".join(WORDS[w] for w in queries[q]), f"it{item:04d}"))
                t += rng.uniform(10, 180)
    rows.sort(key=lambda r: (r[1], r[0]))
    return rows


def write(path: Path, rows: list[tuple[str, int, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["user", "timestamp", "query", "item"])
        out.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--users", type=int, default=100)
    args = parser.parse_args()
    rows = generate(seed=args.seed, users=args.users)
    write(args.out, rows)
    print(f"{args.out}: {len(rows)} clicks by {len({r[0] for r in rows})} users")


if __name__ == "__main__":
    main()
