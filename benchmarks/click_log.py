"""What a kept click-log row costs a node in memory, and how fast a node with a full log restarts.

A node on the virtual network takes ``--rows`` validly signed rows as pull replies of 500
(the real receive path: decode, admission, signature check, store, G-Rank). The rows are the
worst an attacker can send within the wire bounds: each from one of ``rows / 40`` throwaway
issuers, with 16 fresh query terms, a fresh item, a 256-character title of fresh words, 16
fresh tags and 20 shown items. The caps are raised so that every row is kept. Printed:
the RSS growth per kept row, the store's size, then the time to build a ``Node`` again on
the reopened store (what a restarted daemon waits for) and the RSS after it. The last
line is ``rss_per_row_bytes=<n> restart_s=<s>``.

    python benchmarks/click_log.py [--rows 200000]
"""

from __future__ import annotations

import argparse
import random
import resource
import string
import tempfile
import time
from pathlib import Path

import trio
import trio.testing

from edgeswarm.node.config import NodeConfig, PresenceConfig, RankingConfig
from edgeswarm.node.identity import Identity
from edgeswarm.node.node import Node
from edgeswarm.node.ranking.click_log_store import ClickLogStore
from edgeswarm.node.store import Store
from edgeswarm.protocols.ranking.messages import ClickRow, SignedRow
from edgeswarm.protocols.ranking.rows import sign_row
from edgeswarm.sim.virtual_network import LinkModel, VirtualNetwork

BATCH = 500
ROWS_PER_ISSUER = 40


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def word(rng: random.Random, length: int = 8) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=length))


def worst_rows(count: int, seed: int, per_issuer: int = ROWS_PER_ISSUER) -> list[SignedRow]:
    """``count`` rows as large and as unlike each other as the wire allows, ``per_issuer`` per key."""
    rng = random.Random(seed)
    out: list[SignedRow] = []
    key = Identity.from_seed(rng.randbytes(32))
    for n in range(count):
        if n % per_issuer == 0:
            key = Identity.from_seed(rng.randbytes(32))
        title = " ".join(word(rng, 7) for _ in range(32))[:256]
        row = ClickRow(
            node=key.peer_id,
            number=n % per_issuer,
            terms=tuple(sorted({word(rng) for _ in range(16)})),
            seen_before=False,
            shown=tuple(word(rng, 40) for _ in range(20)),
            item=word(rng, 40),
            title=title,
            tags=tuple(word(rng) for _ in range(16)),
        )
        out.append(sign_row(key, row))
    return out


def config(rows: int) -> NodeConfig:
    ranking = RankingConfig(
        anti_entropy_interval=0,
        rows_per_peer_minute=10**9,
        rows_per_issuer_minute=10**9,
        rows_per_minute=10**9,
        max_rows=rows + 1,
        max_log_mb=10.0**6,
        max_issuers=rows // ROWS_PER_ISSUER + rows // BATCH + 10,  # a batch starts a fresh issuer
    )
    return NodeConfig(presence=PresenceConfig(enabled=False), ranking=ranking)


def build(endpoint, store: Store, cfg: NodeConfig, me: Identity) -> Node:
    return Node(identity=me, network=endpoint, store=store, config=cfg, rng=random.Random(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--keep", type=Path, help="keep the store in this directory; if it holds one, only restart")
    args = parser.parse_args()
    cfg = config(args.rows)
    me, sender = Identity.from_seed(b"\x01" * 32), Identity.from_seed(b"\x02" * 32)

    with tempfile.TemporaryDirectory(prefix="edgeswarm-click-log-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "node.sqlite"
        filled = path.exists()

        async def fill() -> tuple[float, float]:
            net = VirtualNetwork(random.Random(0), LinkModel(latency_sigma=0))
            async with trio.open_nursery() as nursery:
                await nursery.start(net.run)
                async with net.attach(me.peer_id) as endpoint:
                    store = Store.open(path)
                    node = build(endpoint, store, cfg, me)
                    assert node.ranking is not None
                    before = rss_mb()
                    taken = 0
                    for start in range(0, args.rows, BATCH):
                        rows = worst_rows(min(BATCH, args.rows - start), seed=start)
                        taken += await node.ranking.gossip.receive(sender.peer_id, rows)
                    after = rss_mb()
                    store.close()
                nursery.cancel_scope.cancel()
            assert taken == args.rows, f"only {taken} of {args.rows} rows kept"
            return before, after

        per_row = float("nan")
        if not filled:
            before, after = trio.run(fill, clock=trio.testing.MockClock(autojump_threshold=0))
            per_row = (after - before) * 2**20 / args.rows
            print(f"{args.rows} worst-case rows kept: RSS {before:.0f} -> {after:.0f} MB ({per_row:.0f} B per row)")
        size = sum(f.stat().st_size for f in folder.glob("node.sqlite*")) / 2**20
        print(f"store on disk: {size:.0f} MB")

        async def restart() -> float:
            net = VirtualNetwork(random.Random(0), LinkModel(latency_sigma=0))
            async with trio.open_nursery() as nursery:
                await nursery.start(net.run)
                async with net.attach(me.peer_id) as endpoint:
                    started = time.perf_counter()
                    store = Store.open(path)
                    node = build(endpoint, store, cfg, me)
                    seconds = time.perf_counter() - started
                    assert node.ranking is not None
                    assert node.ranking.grank.rows == args.rows, (
                        node.ranking.grank.rows,
                        ClickLogStore(store).click_row_count(),
                    )
                    store.close()
                nursery.cancel_scope.cancel()
            return seconds

        seconds = trio.run(restart, clock=trio.testing.MockClock(autojump_threshold=0))
        print(f"restart: a Node on the reopened store in {seconds:.2f} s; RSS now {rss_mb():.0f} MB")
    print(f"rss_per_row_bytes={per_row:.0f} restart_s={seconds:.2f}")


if __name__ == "__main__":
    main()
