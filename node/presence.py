"""Presence service: announce ourselves on gossip and remember who else is up.

Gives every node a cheap, swarm-wide liveness signal that complements the membership
sample, and exercises the pub/sub path end to end.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable

import trio

from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import NetworkError
from edgeswarm.protocols.peer_id import PeerId
from edgeswarm.protocols.presence.messages import Announce

from .config import PresenceConfig


class Presence:
    """Announce every ``interval`` seconds; keep the last-seen time of up to ``max_peers``."""

    def __init__(
        self,
        messenger: Messenger,
        config: PresenceConfig,
        rng: random.Random,
        clock: Callable[[], float],
        services: Callable[[], list[str]],
    ) -> None:
        self._messenger = messenger
        self._config = config
        self._rng = rng
        self._clock = clock
        self._services = services
        self._seen: OrderedDict[PeerId, float] = OrderedDict()
        messenger.register(Announce)

    def seen(self) -> dict[PeerId, float]:
        """Peers heard from on gossip, with when (our clock)."""
        return dict(self._seen)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            subscription = self._messenger.subscribe(Announce)
            nursery.start_soon(self._listen, subscription)
            task_status.started()
            await trio.sleep(self._rng.uniform(0, self._config.interval))
            while True:
                await self.announce()
                await trio.sleep(self._config.interval)

    async def announce(self) -> None:
        network = self._messenger.network
        body = Announce(tuple(network.addrs()[:8]), tuple(self._services()))
        try:
            await self._messenger.publish(body)
        except NetworkError:
            self._messenger.counters.add("presence", "publish_failed")

    async def _listen(self, subscription) -> None:
        async for opened in subscription:
            self._seen.pop(opened.sender, None)
            self._seen[opened.sender] = self._clock()
            if len(self._seen) > self._config.max_peers:
                self._seen.popitem(last=False)
            if opened.body.addrs:
                self._messenger.network.add_addrs(opened.sender, opened.body.addrs)
            self._messenger.counters.add("presence", "seen")
