"""``edgeswarm node run``: a node on a real libp2p host until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import random
import signal
from collections.abc import Sequence
from pathlib import Path

import multiaddr
import trio

from edgeswarm.protocols.membership.messages import Descriptor
from edgeswarm.protocols.network import NetworkError

from .config import ConfigError, NodeConfig
from .control import serve_control
from .identity import load_or_create
from .node import Node
from .store import STORE_FILE, Store

log = logging.getLogger(__name__)


def bootstrap_descriptors(addrs: Sequence[str]) -> list[Descriptor]:
    """Descriptors for full bootstrap multiaddrs (``.../p2p/<id>``); bad ones are ConfigErrors."""
    out = []
    for addr in addrs:
        try:
            peer = multiaddr.Multiaddr(addr).get_peer_id()
        except (ValueError, multiaddr.exceptions.Error) as exc:
            raise ConfigError(f"bootstrap address {addr!r} is not a multiaddr: {exc}") from None
        if not peer:
            raise ConfigError(f"bootstrap address {addr!r} lacks /p2p/<peer id>")
        out.append(Descriptor(peer, (addr,), 0))
    return out


async def run_daemon(config: NodeConfig, data_dir: Path) -> None:
    """Run until a signal; the store is closed and the control socket removed on the way out."""
    # heavy: only the daemon needs py-libp2p
    from edgeswarm.protocols.libp2p_network import Libp2pNetwork, TransportLimits

    net_config = config.network
    bootstrap = bootstrap_descriptors(net_config.bootstrap)
    identity = load_or_create(data_dir)
    store = Store.open(data_dir / STORE_FILE)
    try:
        limits = TransportLimits(eclipse_protection=net_config.eclipse_protection)
        async with Libp2pNetwork.open(
            identity.seed(), listen=net_config.listen, mdns=net_config.mdns, limits=limits
        ) as network:
            node = Node(
                identity=identity, network=network, store=store, config=config,
                rng=random.Random(), bootstrap=bootstrap,
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                await nursery.start(serve_control, node, data_dir)
                log.info("node %s started", identity.peer_id)
                for addr in network.addrs():
                    log.info("listening on %s", addr)
                for d in bootstrap:
                    if d.peer != identity.peer_id:
                        nursery.start_soon(_dial, network, d.addrs[0])
                await _wait_for_signal()
                log.info("stopping")
                node.stop()
                await node.stopped.wait()
                nursery.cancel_scope.cancel()
    finally:
        store.close()
    log.info("stopped cleanly")


async def _dial(network, addr: str) -> None:
    """Connect to a bootstrap peer now, so gossip has a path before the first shuffle."""
    with trio.move_on_after(10):
        try:
            await network.connect(addr)
        except NetworkError as exc:
            log.warning("bootstrap peer %s unreachable: %s", addr, exc)


async def _wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s", signal.Signals(signum).name)
            return
