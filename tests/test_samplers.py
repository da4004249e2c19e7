"""Min-wise samplers: volume buys nothing, one network counts once, failures are refilled."""

import random

import pytest

from edgeswarm.protocols.membership.messages import Descriptor
from edgeswarm.protocols.membership.samplers import Samplers, address_groups

from conftest import identity

P = [identity(n).peer_id for n in range(160)]
HONEST = [Descriptor(P[i], (f"/ip4/{20 + i}.{i}.1.1/tcp/4001",)) for i in range(60)]
ONE_MACHINE = [Descriptor(P[60 + j], (f"/ip4/203.0.113.9/tcp/{5000 + j}",)) for j in range(60)]
BOTNET = [Descriptor(P[60 + j], (f"/ip4/{100 + j}.7.1.1/tcp/4001",)) for j in range(60)]


def samplers(seed: int = 0, slots: int = 20, **kw) -> Samplers:
    return Samplers(P[159], slots, random.Random(seed), **kw)


def sybil_share(s: Samplers, sybils: list[Descriptor], size: int = 20) -> float:
    ids = {d.peer for d in sybils}
    sample = s.sample(size)
    return sum(d.peer in ids for d in sample) / len(sample)


def test_address_groups_are_networks_and_a_relayed_address_is_its_relays():
    assert address_groups("/ip4/1.2.3.4/tcp/4001") == ("1.2", "1.2.3", "1.2.3.4")
    relayed = f"/ip4/5.6.7.8/tcp/4001/p2p/{P[1]}/p2p-circuit/p2p/{P[2]}"
    assert address_groups(relayed) == ("5.6", "5.6.7", "5.6.7.8")
    assert address_groups("/ip6/2001:db8:1:2:3::1/udp/1/quic-v1") == (
        "2001:0db8",
        "2001:0db8:0001",
        "2001:0db8:0001:0002",
    )
    assert address_groups("/dns4/relay.example/tcp/1") == ("relay.example",) * 3
    assert address_groups("/memory/7") == ("/memory/7",) * 3


def test_offering_a_peer_a_thousand_times_is_offering_it_once():
    once, flooded = samplers(1), samplers(1)
    once.offer(HONEST + BOTNET)
    flooded.offer(HONEST)
    for _ in range(1000 // len(BOTNET)):
        flooded.offer(BOTNET)
    assert flooded.peers() == once.peers()
    assert flooded.sample(20) == once.sample(20)


@pytest.mark.parametrize("seed", range(5))
def test_one_machines_keys_count_like_one_peer(seed):
    s = samplers(seed)
    s.offer(ONE_MACHINE[:30])  # the Sybils arrive first and in bulk
    s.offer(HONEST)
    s.offer(ONE_MACHINE[30:])
    # one network among 61: a slot goes to it with chance 1/61, and the top-up takes one
    # peer per network; half the identities are Sybils, yet they hold at most a few entries
    assert sybil_share(s, ONE_MACHINE) <= 3 / 20


def test_a_botnet_gets_about_its_share_of_identities():
    shares = []
    for seed in range(20):
        s = samplers(seed)
        s.offer(BOTNET)
        s.offer(HONEST)
        shares.append(sybil_share(s, BOTNET))
    assert 0.3 <= sum(shares) / len(shares) <= 0.7  # 60 of 120 identities, each its own network


def test_listing_more_addresses_only_ranks_worse():
    honest = Descriptor(P[1], ("/ip4/30.1.1.1/tcp/1",))
    padded = Descriptor(P[1], ("/ip4/30.1.1.1/tcp/1", "/ip4/31.1.1.1/tcp/1", "/ip4/32.1.1.1/tcp/1"))
    for seed in range(20):
        plain, claims = samplers(seed, slots=1), samplers(seed, slots=1)
        plain.offer([honest])
        claims.offer([padded])
        assert plain._slots[0].rank <= claims._slots[0].rank  # same seed, same key and permutation


def test_a_failed_peer_is_replaced_from_the_history():
    s = samplers(2)
    s.offer(HONEST[:10])
    held = s.peers()
    gone = held[0].peer
    s.remove(gone)
    assert gone not in s and gone not in {d.peer for d in s.sample(20)}
    assert len(s.sample(20)) == 9  # every other peer still sampled


def test_reseeding_keeps_every_slot_filled():
    s = samplers(3, slots=5)
    s.offer(HONEST[:10])
    for _ in range(12):
        s.reseed()
        assert all(slot.held is not None for slot in s._slots)


def test_a_flood_from_one_network_evicts_only_its_own_history():
    s = samplers(4, history=64)
    s.offer(HONEST[:40])
    flood = [Descriptor(identity(1000 + j).peer_id, (f"/ip4/203.0.113.9/tcp/{j}",)) for j in range(200)]
    s.offer(flood)
    kept = {d.peer for d in s.history()}
    assert all(d.peer in kept for d in HONEST[:40])
    assert len(kept) == 64


def test_a_sample_is_topped_up_one_network_at_a_time():
    # a node that knows 4 honest peers and 60 keys of one machine: the view stays small
    # rather than fill with that machine's keys
    s = samplers(5)
    s.offer(HONEST[:4] + ONE_MACHINE)
    sample = s.sample(20)
    assert {d.peer for d in HONEST[:4]} <= {d.peer for d in sample}
    assert sum(d in ONE_MACHINE for d in sample) <= 4  # its fair share: 20 over 5 networks
