"""Presence service: announce ourselves on gossip and remember who else is up.

Gives every node a cheap, swarm-wide liveness signal that complements the membership
sample, and exercises the pub/sub path end to end.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import OrderedDict, deque
from collections.abc import Callable

import trio

from edgeswarm.node.config import PresenceConfig
from edgeswarm.node.control.replies import Delays
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import NetworkError
from edgeswarm.protocols.peer_id import PeerId
from edgeswarm.protocols.presence.messages import Announce


class Presence:
    """Announce every ``interval`` seconds; keep the last-seen time of up to ``max_peers``.

    Counters: ``presence/received``; ``presence/missed``, gaps in a sender's announcement
    numbers; ``presence/late``, announcements that arrived after a later one (first counted
    as missed). Gossip delivery = received / (received + missed - late), on every node.
    """

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
        # per sender: (last heard, session, lowest and highest announcement number heard)
        self._seen: OrderedDict[PeerId, tuple[float, int, int, int]] = OrderedDict()
        # the signed time of the address list last taken from each peer: an older one (late
        # gossip from before it moved) never replaces a newer one
        self._addrs_as_of: OrderedDict[PeerId, float] = OrderedDict()
        self._session = rng.getrandbits(63)
        self._announced = 0
        self._delays: deque[tuple[float, float]] = deque(maxlen=4096)  # (received at, delay)
        messenger.register(Announce)

    def seen(self) -> dict[PeerId, float]:
        """Peers heard from on gossip, with when (our clock)."""
        return {peer: state[0] for peer, state in self._seen.items()}

    def delays(self, since: float = float("-inf")) -> Delays:
        """Publish-to-receive delay of recent announcements received after ``since``, in ms.

        Measured from the sender's envelope time to our clock, so clock skew between
        machines adds to it; on one host it is exact.
        """
        ordered = sorted(delay for received, delay in self._delays if received >= since)
        if not ordered:
            return Delays(count=0, p50_ms=None, p99_ms=None)
        q = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 99
        return Delays(count=len(ordered), p50_ms=round(q[49] * 1000, 3), p99_ms=round(q[98] * 1000, 3))

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
        body = Announce(
            session=self._session,
            number=self._announced,
            addrs=tuple(network.addrs()[:8]),
            services=tuple(self._services()),
        )
        self._announced += 1
        try:
            await self._messenger.publish(body)
        except NetworkError:
            self._messenger.counters.add("presence", "publish_failed")

    async def _listen(self, subscription) -> None:
        async for opened in subscription:
            counters = self._messenger.counters
            now = self._clock()
            session, number = opened.body.session, opened.body.number
            previous = self._seen.pop(opened.sender, None)
            lowest = highest = number
            if previous is not None and previous[1] == session:
                _, _, lowest, highest = previous
                # keep missed - late = the numbers in [lowest, highest] not yet heard
                if number > highest:
                    counters.add("presence", "missed", number - highest - 1)
                    highest = number
                elif number < lowest:
                    counters.add("presence", "missed", lowest - number - 1)
                    lowest = number
                else:
                    counters.add("presence", "late")
            self._seen[opened.sender] = (now, session, lowest, highest)
            if len(self._seen) > self._config.max_peers:
                self._seen.popitem(last=False)
            self._delays.append((now, max(0.0, now - opened.ts)))
            if opened.body.addrs:  # its own signed list: the newest tells where it is now
                newest = opened.ts > self._addrs_as_of.get(opened.sender, -math.inf)
                if newest:
                    self._addrs_as_of[opened.sender] = opened.ts
                    self._addrs_as_of.move_to_end(opened.sender)
                    if len(self._addrs_as_of) > self._config.max_peers:
                        self._addrs_as_of.popitem(last=False)
                self._messenger.network.add_addrs(opened.sender, opened.body.addrs, current=newest)
            counters.add("presence", "received")
