"""Reachability through real NATs (network namespaces, nftables routers; tests/nat_lab.py):
how long until two NATed daemons first talk through a relay, and until that turns direct.

Each trial builds a fresh lab: a public segment with an edgeswarm node (no relay configured
anywhere: AutoNAT finds it public and it relays), and ``--pairs`` pairs of NATed daemons,
each node behind its own router, endpoint-independent (hole punching works) or symmetric
(``--symmetric``: it cannot). Timed from the moment both nodes of a pair hold a
reservation and one pings the other: ``first_s``, until they are connected (through the
relay: its relays are dialled 0.5 s after its own unreachable addresses); ``direct_s``, until
that connection runs direct (hole punched), or ``-`` if it did not within 60 s.
Printed: one line per pair, then the medians and the share of pairs upgraded.

    sudo python benchmarks/nat_namespaces.py [--trials 3] [--pairs 2] [--symmetric]

Needs root, iproute2 and nftables (it says which is missing otherwise).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from edgeswarm.sim.processes import DaemonGroup

from conftest import FAST as CONFIG  # the test suite's fast timers
from nat_lab import PUBLIC_IP, NatLab, why_not

UPGRADE_WAIT = 60.0


def trial(index: int, pairs: int, nat: str) -> list[tuple[float | None, float | None]]:
    lab = NatLab(f"eb{index}")
    root = Path(tempfile.mkdtemp(prefix="nat-bench-"))
    config = root / "node.toml"
    config.write_text(CONFIG)
    args = ["--config", str(config)]
    try:
        lab._build_public()
        hosts = [lab.private(lan, nat=nat) for lan in range(1, 2 * pairs + 1)]
        with DaemonGroup(root / "swarm", extra_args=args) as group:
            public = group.spawn("public", args=[*args, "--listen", f"/ip4/{PUBLIC_IP}/tcp/4001"], netns=lab.public)
            public_addr = public.status()["addresses"][0]
            nodes = [
                group.spawn(
                    f"n{i}", bootstrap=[public_addr], args=[*args, "--listen", f"/ip4/{h.ip}/tcp/4001"], netns=h.netns
                )
                for i, h in enumerate(hosts)
            ]
            ids = [n.wait(counters={"transport.relay_reservations": 1})["status"]["peer_id"] for n in nodes]
            results = []
            for p in range(pairs):
                a, b_id = nodes[2 * p], ids[2 * p + 1]
                a.wait(known=[b_id])
                start = time.perf_counter()
                ping = threading.Thread(
                    target=a.request,
                    args=({"cmd": "ping", "peer": b_id, "bytes": 1024, "timeout": 120},),
                    kwargs={"timeout": 150},
                )
                ping.start()
                first = direct = None
                while time.perf_counter() - start < UPGRADE_WAIT and direct is None:
                    status = a.status()
                    if b_id in status["peers"]:
                        now = time.perf_counter() - start
                        first = now if first is None else first
                        direct = now if b_id not in status["relayed"] else None
                    time.sleep(0.1)
                ping.join()
                results.append((first, direct))
            return results
    finally:
        lab.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--symmetric", action="store_true", help="symmetric NATs (no hole punching)")
    options = parser.parse_args()
    reason = why_not()
    if reason is not None:
        sys.exit(f"no NAT lab: {reason}")
    nat = "symmetric" if options.symmetric else "endpoint-independent"
    print("trial pair nat first_s direct_s")
    firsts, directs, pairs = [], [], 0
    for t in range(options.trials):
        for p, (first, direct) in enumerate(trial(t, options.pairs, nat)):
            pairs += 1
            if first is not None:
                firsts.append(first)
            if direct is not None:
                directs.append(direct)
            print(t, p, nat, *("-" if x is None else f"{x:.2f}" for x in (first, direct)), flush=True)
    median_direct = f"{statistics.median(directs):.2f}" if directs else "-"
    print(
        f"median first_s {statistics.median(firsts):.2f}  median direct_s {median_direct}  "
        f"upgraded {len(directs)}/{pairs}"
    )


if __name__ == "__main__":
    main()
