"""A simulated device: a persistent identity and store, and a node that can crash and restart."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from edgeswarm.node.compute import ModelledCompute
from edgeswarm.node.config import NodeConfig
from edgeswarm.node.identity import Identity
from edgeswarm.node.node import Node, NodeStatus
from edgeswarm.node.store import Store
from edgeswarm.node.subnet.device import DeviceProfile
from edgeswarm.protocols.membership.messages import Descriptor

from .determinism import derive_rng
from .tallies import Tallies
from .virtual_network import VirtualNetwork

if TYPE_CHECKING:
    from edgeswarm.node.fl.run_client import FederationHooks


class SimHost:
    """One device of the simulation.

    The identity and the store outlive node sessions, as a disk does: ``crash`` cancels the
    running node without letting it save, and the next ``start`` builds a fresh ``Node`` that
    recovers from the store alone.
    """

    def __init__(
        self,
        *,
        index: int,
        seed: int,
        identity: Identity,
        store: Store,
        device: DeviceProfile,
        config: NodeConfig,
        network: VirtualNetwork,
        clock: Callable[[], float],
        bootstrap: Sequence[Descriptor],
        addrs: Sequence[str] = (),
    ) -> None:
        self.index = index
        self.addrs = tuple(addrs)
        """What the node advertises on the virtual network (modelled, e.g. for Sybil studies)."""
        self.identity = identity
        self.store = store
        self.device = device
        self._seed = seed
        self._config = config
        self._network = network
        self._clock = clock
        self._bootstrap = tuple(d for d in bootstrap if d.peer != identity.peer_id)
        self._scope: trio.CancelScope | None = None
        self.node: Node | None = None
        self.sessions = 0
        self.tallies = Tallies()
        self.federation_hooks: FederationHooks | None = None
        """Passed to every node this host starts (workloads make attackers, gateways, satellites)."""

    def counters(self) -> dict[str, dict[str, int]]:
        """Counters summed over every session so far, including the running one."""
        return self.tallies.total(self.status())

    @property
    def online(self) -> bool:
        return self.node is not None

    def status(self) -> NodeStatus | None:
        return None if self.node is None else self.node.status()

    async def start(self, nursery: trio.Nursery) -> None:
        """Bring the node up; returns once its services have started."""
        if self._scope is not None:
            raise RuntimeError(f"node {self.index} is already running")
        await nursery.start(self._session)

    def crash(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def _session(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.sessions += 1
        rng = derive_rng(self._seed, "node", self.index, self.sessions)
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                async with self._network.attach(
                    self.identity.peer_id, uplink_bytes_per_s=self.device.uplink_bytes_per_s, addrs=self.addrs
                ) as endpoint:
                    node = Node(
                        identity=self.identity,
                        network=endpoint,
                        store=self.store,
                        config=self._config,
                        rng=rng,
                        clock=self._clock,
                        bootstrap=self._bootstrap,
                        compute=ModelledCompute(self.device.compute_speed),
                        federation_hooks=self.federation_hooks,
                    )
                    self.node = node
                    await node.run(task_status=task_status)
            finally:
                if self.node is not None:
                    self.tallies.end_session(self.node.status())
                self.node = None
                self._scope = None
