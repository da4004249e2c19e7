"""Where py-libp2p meets hostile input: guards so that nothing a peer sends ends the node.

py-libp2p 0.8.1 lets an exception in a stream handler (pub/sub's protobuf ``DecodeError`` on
64 bytes of garbage, say) or in one of pub/sub's per-message tasks escape into the
connection's or the service's nursery, which ends the host and the daemon with it. Its
inbound connection handler also holds its slot, and its task, until the host stops, even
after the connection closed, so the 250th inbound connection of a daemon's life would be its
last. ``Guards`` replaces or wraps those entry points once, before the host listens:

- every inbound stream (ours and py-libp2p's: pub/sub, identify) runs inside a guard that
  refuses banned peers, and counts, resets and penalizes on any exception;
- inbound connections are admitted here: slots per IP and in total, held while the
  connection lives and not a moment longer; banned peers are dropped after the handshake;
- pub/sub's non-daemon tasks (new peers, send queues, pushes) run inside a guard;
- py-libp2p's auto-connector, which redials every peerstore entry (dead ones included)
  every 30 s, is off: membership chooses whom to dial.

These guards are the process boundary around third-party code, so they catch ``Exception``
(never ``BaseException``: cancellation passes through).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import trio
from libp2p.abc import IHost, INetStream
from libp2p.exceptions import BaseLibp2pError
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub

from .limits import SlotLimiter
from .peer_id import PeerId
from .peer_policy import PeerPolicy

log = logging.getLogger("edgeswarm.protocols.libp2p_network")

# what a failing dial, stream or peer can raise inside py-libp2p and trio
TRANSPORT_ERRORS = (BaseLibp2pError, OSError, EOFError, trio.BrokenResourceError, trio.ClosedResourceError)


class Guards:
    """The guards of one libp2p host (see the module docstring).

    Parameters
    ----------
    stats : dict
        The transport's counters; the guards add to them.
    policy : PeerPolicy
        Who is refused.
    connections : SlotLimiter
        Inbound connection slots, keyed by remote IP.
    penalize : callable (peer, reason)
        Report a misbehaving peer.
    hang_up : callable (peer)
        Disconnect a peer soon.
    """

    def __init__(
        self,
        stats: dict[str, int],
        policy: PeerPolicy,
        connections: SlotLimiter,
        penalize: Callable[[PeerId, str], None],
        hang_up: Callable[[PeerId], None],
    ) -> None:
        self._stats = stats
        self._policy = policy
        self._connections = connections
        self._penalize = penalize
        self._hang_up = hang_up

    def install(self, host: IHost, pubsub: Pubsub) -> None:
        """Wrap the host's and pub/sub's entry points (before the host listens)."""
        swarm: Any = host.get_network()  # its internals, beyond py-libp2p's INetworkService
        handle_stream = swarm.common_stream_handler
        push_msg = pubsub.push_msg

        async def guarded_stream(stream: INetStream) -> None:
            peer = stream.muxed_conn.peer_id.to_base58()
            if self._policy.banned(peer, trio.current_time()):  # refused peers get no stream at all
                self._stats["streams_refused_banned"] += 1
                await reset(stream)
                self._hang_up(peer)
                return
            try:
                await handle_stream(stream)
            except Exception as exc:  # noqa: BLE001 - the boundary around py-libp2p's handlers
                self.contain(peer, "stream_handler_errors", exc)
                await reset(stream)

        async def admitted_connection(conn: Any, maddr: Any) -> None:
            ip = _remote_ip(conn)
            refused = self._connections.acquire(ip)
            if refused is not None:
                self._stats[f"connections_refused_{refused}"] += 1
                await aclose(conn)
                return
            try:
                try:  # Noise and yamux, within the host's inbound_upgrade_timeout
                    muxed = await swarm.upgrade_inbound_raw_conn(RawConnection(conn, False), maddr)
                except Exception as exc:  # noqa: BLE001 - any failed handshake (timeout, refusal, garbage)
                    self._stats["handshakes_failed"] += 1
                    log.debug("inbound handshake from %s failed: %s", ip, exc)
                    await aclose(conn)
                    return
                if self._policy.banned(muxed.peer_id.to_base58(), trio.current_time()):
                    self._stats["connections_refused_banned"] += 1  # refused peers get no connection either
                    await aclose(muxed)
                    return
                await cast(Any, muxed).event_closed.wait()  # yamux's, beyond IMuxedConn
            finally:
                self._connections.release(ip)

        async def guarded_push(forwarder: ID, message: Any) -> None:
            try:
                await push_msg(forwarder, message)
            except Exception as exc:  # noqa: BLE001 - a message pub/sub cannot handle is the forwarder's fault
                self.contain(forwarder.to_base58(), "pubsub_task_errors", exc)

        swarm.common_stream_handler = guarded_stream
        swarm._handle_inbound_connection = admitted_connection
        cast(Any, pubsub).push_msg = guarded_push

    async def stop_auto_dials(self, host: IHost) -> None:
        """Stop py-libp2p's auto-connector (once the host runs): it redials every peerstore
        entry, dead ones included, every 10-30 s; membership chooses whom we dial."""
        await cast(Any, host.get_network()).auto_connector.stop()

    def guard_tasks(self, manager: Any) -> None:
        """Run pub/sub's non-daemon tasks (one per peer or message) inside a guard: a failure
        ends that task, never the pub/sub service. ``manager`` is pub/sub's service manager."""
        run_task = manager.run_task

        def guarded_run_task(async_fn: Any, *args: Any, daemon: bool = False, **kwargs: Any) -> None:
            if daemon:  # the service's own loops: their failure is the service's
                return run_task(async_fn, *args, daemon=True, **kwargs)

            async def guarded(*task_args: Any) -> None:
                try:
                    await async_fn(*task_args)
                except Exception as exc:  # noqa: BLE001 - the boundary around py-libp2p's pub/sub tasks
                    self.contain(None, "pubsub_task_errors", exc)

            guarded.__name__ = guarded.__qualname__ = getattr(async_fn, "__name__", "pubsub_task")
            return run_task(guarded, *args, **kwargs)

        manager.run_task = guarded_run_task

    def contain(self, peer: PeerId | None, counter: str, exc: Exception) -> None:
        """Count and log an exception that was stopped at the boundary; penalize its peer."""
        self._stats[counter] += 1
        log.warning("contained %s from %s: %s", type(exc).__name__, peer or "a pub/sub task", exc)
        log.debug("contained exception", exc_info=exc)
        if peer is not None:
            self._penalize(peer, f"{counter}: {type(exc).__name__}")


def _remote_ip(conn: Any) -> str:
    """The remote IP of a raw inbound connection ("?" if the transport does not say)."""
    try:
        address = conn.get_remote_address()
    except (AttributeError, OSError):
        address = None
    return str(address[0]) if address else "?"


async def aclose(conn: Any) -> None:
    """Close a connection, ignoring that it may already be gone."""
    try:
        await conn.close()
    except TRANSPORT_ERRORS:
        pass


async def reset(stream: INetStream) -> None:
    """Reset a stream, ignoring that it may already be gone."""
    try:
        await stream.reset()
    except TRANSPORT_ERRORS:
        pass
