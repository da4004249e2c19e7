"""Transport benchmark: real daemons on loopback, each figure beside its baseline.

1. Request/response: 128 KiB pings between two daemons (signed envelopes over Noise +
   yamux), throughput and p50/p99 round trip, beside a plain trio TCP echo between two
   processes moving the same bytes; prints the ratio.
2. Gossip: 10 daemons announcing on GossipSub at 20 messages/s in total for 30 s; delivery
   ratio (from gaps in each sender's announcement numbers, counted by every receiver) and
   p50/p99 publish-to-receive delay.
3. Footprint: size of a core-only install (fresh venv, ``pip install .``) and the idle RSS
   of one daemon run from it (so torch cannot be imported there at all).

    python benchmarks/transport.py [--pings 200] [--gossip-seconds 30] [--skip-install]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from edgeswarm.sim.processes import Daemon, DaemonGroup

SIZE = 128 * 1024

ECHO_SERVER = r"""
import sys, trio
async def echo(stream):
    while True:
        data = await stream.receive_some(1 << 20)
        if not data:
            return
        await stream.send_all(data)
async def main():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(echo, listeners)
trio.run(main)
"""


def quantiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return q[49], q[98]


def tcp_baseline(pings: int) -> list[float]:
    """Round trips (ms) of SIZE bytes through a trio TCP echo server in another process."""
    import trio

    server = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())

        async def client() -> list[float]:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            payload = os.urandom(SIZE)
            rtts = []
            for i in range(pings + 5):
                start = time.perf_counter()
                await stream.send_all(payload)
                got = 0
                while got < SIZE:
                    got += len(await stream.receive_some(SIZE - got))
                if i >= 5:
                    rtts.append((time.perf_counter() - start) * 1000)
            await stream.aclose()
            return rtts

        return trio.run(client)
    finally:
        server.kill()
        server.wait()


def request_response(root: Path, pings: int) -> list[float]:
    with DaemonGroup(root) as group:
        a = group.spawn("a")
        b = group.spawn("b", bootstrap=[a.status()["addresses"][0]])
        target = a.status()["peer_id"]
        rtts = []
        for i in range(pings + 5):
            result = b.request({"cmd": "ping", "peer": target, "bytes": SIZE})
            assert result["intact"], "payload altered"
            if i >= 5:
                rtts.append(result["rtt_ms"])
        return rtts


def gossip(root: Path, seconds: float, daemons: int = 10, rate: float = 20.0) -> dict[str, float]:
    config = root / "gossip.toml"
    root.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f"[presence]\ninterval = {daemons / rate}\n[membership]\nshuffle_interval = 2.0\n"
        "[network]\neclipse_protection = false\n"  # all daemons share 127.0.0.1
    )
    with DaemonGroup(root / "swarm", extra_args=["--config", str(config)]) as group:
        first = group.spawn("d00")
        seed = first.status()["addresses"][0]
        swarm = [first] + [group.spawn(f"d{i:02d}", bootstrap=[seed], ready=False) for i in range(1, daemons)]
        for d in swarm:
            d.wait_ready()
        # warm-up: every daemon has heard every other, so the mesh is formed
        deadline = time.monotonic() + 60
        while any(d.status()["heard_from"] < daemons - 1 for d in swarm):
            if time.monotonic() > deadline:
                raise RuntimeError("gossip mesh did not form in 60 s")
            time.sleep(0.5)

        def totals() -> tuple[int, int, int, int]:
            statuses = [d.status() for d in swarm]
            published = sum(s["transport"].get("gossip_published", 0) for s in statuses)
            presence = [s["counters"].get("presence", {}) for s in statuses]
            return (published, *(sum(p.get(k, 0) for p in presence) for k in ("received", "missed", "late")))

        # delivery counts gaps in each sender's announcement numbers at every receiver:
        # exact, whatever moment each daemon is asked
        p0, _, _, _ = totals()
        window_start = time.time()
        time.sleep(seconds)
        p1, received, missed, late = totals()  # since each receiver first heard each sender
        published, lost = p1 - p0, missed - late
        delays = []
        for d in swarm:
            info = d.request({"cmd": "presence", "since": window_start})
            delays.append(info["delays"])
        p50 = statistics.median(x["p50_ms"] for x in delays)
        p99 = max(x["p99_ms"] for x in delays)
        return {
            "published": published,
            "rate": published / seconds,
            "delivery": received / (received + lost),
            "p50_ms": p50,
            "p99_ms": p99,
        }


def core_footprint(root: Path) -> tuple[float, float]:
    """(install size MB, idle daemon RSS MB) of a core-only install in a fresh venv."""
    venv = root / "core-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(REPO)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6
    daemon = Daemon(root / "core-node", ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"], root / "core-node.log")
    daemon.data_dir.mkdir(parents=True, mode=0o700)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    daemon.process = subprocess.Popen(
        [str(py), "-m", "edgeswarm.node", "node", "run", "--data-dir", str(daemon.data_dir), *daemon.args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        cwd=root,
    )
    try:
        daemon.wait_ready()
        time.sleep(5)
        rss_kb = next(
            int(line.split()[1])
            for line in Path(f"/proc/{daemon.process.pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        torch_present = (
            subprocess.run([str(py), "-c", "import torch"], capture_output=True, check=False).returncode == 0
        )
        assert not torch_present, "the core-only venv must not contain torch"
    finally:
        daemon.stop()
    return size, rss_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pings", type=int, default=200)
    parser.add_argument("--gossip-seconds", type=float, default=30.0)
    parser.add_argument("--skip-install", action="store_true", help="skip the core-only install and RSS figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ours = request_response(root / "rr", args.pings)
        tcp = tcp_baseline(args.pings)
        ours_p50, ours_p99 = quantiles(ours)
        tcp_p50, tcp_p99 = quantiles(tcp)
        ours_mbs = 2 * SIZE / 1e6 / (statistics.fmean(ours) / 1000)
        tcp_mbs = 2 * SIZE / 1e6 / (statistics.fmean(tcp) / 1000)
        print(
            f"request/response 128 KiB x {args.pings}: edgeswarm {ours_mbs:.1f} MB/s p50 {ours_p50:.2f} ms "
            f"p99 {ours_p99:.2f} ms | trio TCP {tcp_mbs:.1f} MB/s p50 {tcp_p50:.2f} ms p99 {tcp_p99:.2f} ms"
        )
        g = gossip(root / "gossip", args.gossip_seconds)
        print(
            f"gossip 10 daemons {g['rate']:.1f} msg/s for {args.gossip_seconds:g} s: delivery {g['delivery']:.4%} "
            f"p50 {g['p50_ms']:.1f} ms p99 {g['p99_ms']:.1f} ms"
        )
        footprint = (
            ""
            if args.skip_install
            else "core_install_mb={:.0f} idle_daemon_rss_mb={:.1f} ".format(*core_footprint(root / "core"))
        )
        print(
            f"rr_mb_per_s={ours_mbs:.1f} tcp_mb_per_s={tcp_mbs:.1f} ratio={ours_mbs / tcp_mbs:.3f} "
            f"gossip_delivery={g['delivery']:.4f} gossip_p50_ms={g['p50_ms']:.1f} gossip_p99_ms={g['p99_ms']:.1f} "
            f"{footprint}".strip()
        )


if __name__ == "__main__":
    main()
