"""Presence counts gossip loss where it happens, from gaps in announcement numbers."""

import random

import trio

from edgeswarm.node.config import PresenceConfig
from edgeswarm.node.swarm.presence import Presence
from edgeswarm.protocols.counters import Counters
from edgeswarm.protocols.envelope import Opened
from edgeswarm.protocols.presence.messages import Announce

from conftest import identity, run_virtual

A, B = identity(1).peer_id, identity(2).peer_id


class FakeMessenger:
    def __init__(self):
        self.counters = Counters()
        self.network = self

    def register(self, *types):
        pass

    def add_addrs(self, peer, addrs, current=False):
        self.added = (peer, addrs)


def test_missed_and_late_announcements_are_counted():
    async def main():
        messenger = FakeMessenger()
        presence = Presence(messenger, PresenceConfig(), random.Random(0), trio.current_time, list)
        send, receive = trio.open_memory_channel(100)
        arrivals = [(A, 7, 1), (A, 7, 0), (A, 7, 3), (A, 7, 2), (A, 7, 5), (B, 1, 4), (B, 1, 1), (A, 8, 0), (A, 8, 2)]
        for sender, session, number in arrivals:
            body = Announce(session=session, number=number, addrs=("/ip4/1.2.3.4/tcp/1",), services=("ping",))
            send.send_nowait(Opened(sender, 0, -1.0, body))
        send.close()
        await presence._listen(receive)
        counts = messenger.counters.snapshot()["presence"]
        # A session 7: 1 0 3 2 5 -> 2 and 4 went missing on arrival of 3 and 5, 2 came late;
        # B: 4 then 1 -> 2 and 3 missing; A session 8 starts afresh (a restart), skips 1
        assert counts == {"received": 9, "missed": 5, "late": 1}
        # delivery = received / (received + missed - late): A 0..5 + B 1..4 + A 0..2 = 13 sent
        assert counts["received"] + counts["missed"] - counts["late"] == 6 + 4 + 3
        assert set(presence.seen()) == {A, B}
        assert presence.delays().count == 9

    run_virtual(main)
