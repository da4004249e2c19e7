"""``edgeswarm node run``: a node on a real libp2p host until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import trio

from edgeswarm.node import logs
from edgeswarm.node.addresses import claim_ports, parse_bootstrap, parse_listen
from edgeswarm.node.config import ConfigError, NetworkConfig, NodeConfig
from edgeswarm.node.control.server import serve_control
from edgeswarm.node.data_dir import claim
from edgeswarm.node.identity import Identity, IdentityError, load_or_create
from edgeswarm.node.node import Node
from edgeswarm.node.store import STORE_FILE, Store
from edgeswarm.protocols.membership.messages import Descriptor
from edgeswarm.protocols.network import NetworkError

log = logging.getLogger(__name__)


def bootstrap_descriptors(addrs: Sequence[str]) -> list[Descriptor]:
    """Descriptors for full bootstrap multiaddrs (``.../p2p/<id>``); bad ones are ConfigErrors."""
    try:
        return [Descriptor(parse_bootstrap(addr), (addr,), 0) for addr in addrs]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def transport_limits(net: NetworkConfig):
    """The libp2p transport's bounds from ``[network]``."""
    from edgeswarm.protocols.limits import Rate, TransportLimits

    mib = 1024 * 1024
    return TransportLimits(
        streams_per_peer=net.streams_per_peer,
        eclipse_protection=net.eclipse_protection,
        inbound_connections=net.inbound_connections,
        connections_per_ip=net.connections_per_ip,
        handshake_timeout=net.handshake_timeout,
        inbound_streams=net.inbound_streams,
        inflight_request_bytes=int(net.inflight_request_mb * mib),
        inflight_request_bytes_per_peer=int(net.inflight_request_mb_per_peer * mib),
        gossip_per_origin=Rate(net.gossip_per_origin, net.gossip_burst),
    )


def relay_service(net: NetworkConfig):
    """The bounds of relaying for others, or None where ``[network] relay_service`` is off."""
    from edgeswarm.protocols.relays import RelayService

    if not net.relay_service:
        return None
    return RelayService(
        when_public=net.relay_service == "auto",
        reservations=net.relay_reservations,
        circuits_per_peer=net.relay_circuits_per_peer,
        circuit_seconds=net.relay_circuit_seconds,
        circuit_bytes=net.relay_circuit_kb * 1024,
    )


def _bind_store(store: Store, identity: Identity) -> None:
    """The store belongs to one identity: record it on first use, refuse another one after."""
    recorded = store.get_meta("peer_id")
    if recorded is None:
        store.set_meta("peer_id", identity.peer_id)
    elif recorded != identity.peer_id:
        raise IdentityError(
            f"the store in '{store.location}' belongs to {recorded}, but the key file names "
            f"{identity.peer_id}; restore the matching key file"
        )


async def run_daemon(
    config: NodeConfig,
    data_dir: Path,
    *,
    until: Callable[[], Awaitable[object]] | None = None,
    task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until ``until()`` returns (default: SIGINT or SIGTERM); the store is closed and the
    control socket removed on the way out. ``task_status`` gets the node once its control
    socket answers (how ``node.embedded`` runs one inside an asyncio program).

    Before anything in ``data_dir`` is opened: the addresses are checked (ConfigError),
    the directory is claimed for this process (DataDirError if another daemon holds it)
    and so are the listen ports (ListenError), for as long as the daemon runs.
    """
    logs.adopt_libp2p()
    os.umask(0o077)  # every file this daemon writes is its user's alone
    net_config = config.network
    bootstrap = bootstrap_descriptors(net_config.bootstrap)
    try:
        for addr in net_config.listen:
            parse_listen(addr)
        for addr in net_config.relays:
            parse_bootstrap(addr, "relay")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    with claim(data_dir), claim_ports(net_config.listen):
        identity = load_or_create(data_dir)
        store = Store.open(data_dir / STORE_FILE)
        try:
            _bind_store(store, identity)
            await _serve(config, data_dir, identity, store, bootstrap, until or _wait_for_signal, task_status)
        finally:
            store.close()
    log.info("stopped cleanly")


async def _serve(
    config: NodeConfig,
    data_dir: Path,
    identity: Identity,
    store: Store,
    bootstrap: list[Descriptor],
    until: Callable[[], Awaitable[object]],
    task_status: trio.TaskStatus[Node],
) -> None:
    """The node on libp2p with its control socket, until ``until()`` returns."""
    from edgeswarm.protocols.libp2p_network import Libp2pNetwork

    net_config = config.network
    async with Libp2pNetwork.open(
        identity.seed(),
        listen=net_config.listen,
        mdns=net_config.mdns,
        limits=transport_limits(net_config),
        relays=net_config.relays,
        relay_service=relay_service(net_config),
        auto_relays=net_config.auto_relays,
    ) as network:
        node = Node(
            identity=identity, network=network, store=store, config=config, rng=random.Random(), bootstrap=bootstrap
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await nursery.start(serve_control, node, data_dir)
            log.info("node %s started", identity.peer_id)
            for addr in network.addrs():
                log.info("listening on %s", addr)
            notify_supervisor(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving as {identity.peer_id}")
            task_status.started(node)
            for d in bootstrap:
                if d.peer != identity.peer_id:
                    nursery.start_soon(_dial, network, d.addrs[0])
            await until()
            log.info("stopping")
            notify_supervisor("STOPPING=1")
            node.stop()
            await node.stopped.wait()
            nursery.cancel_scope.cancel()


def notify_supervisor(state: str) -> None:
    """Tell a supervisor how the daemon is, by sd_notify's protocol (systemd ``Type=notify``).

    ``$NOTIFY_SOCKET`` names a unix datagram socket (``@name``: an abstract one); without it
    this does nothing. ``READY=1`` is sent once the control socket answers, so a supervisor,
    script or test waits for that message instead of polling for the socket.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError as exc:
            log.warning("cannot notify the supervisor at %s: %s", os.environ["NOTIFY_SOCKET"], exc.strerror)


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
