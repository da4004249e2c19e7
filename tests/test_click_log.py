"""The click log's state machine, without trio or a network: rows in, decisions and rows out."""

import random

import pytest

from edgeswarm.learning.grank import GRankParams
from edgeswarm.node.identity import Identity
from edgeswarm.node.ranking.click_log import ClickLog
from edgeswarm.node.ranking.click_log_limits import ClickLogLimits
from edgeswarm.node.ranking.click_log_store import ClickLogStore
from edgeswarm.node.store import Store
from edgeswarm.protocols.counters import Counters
from edgeswarm.protocols.ranking.messages import ClickRow, SignedRow
from edgeswarm.protocols.ranking.rows import sign_row

from conftest import identity

NEVER_MET = set
LIMITS = ClickLogLimits(rows_per_peer_minute=10_000, rows_per_issuer_minute=10_000)


def new_log(n, limits=LIMITS, store=None):
    counters = Counters()
    store = store or Store.open(":memory:")
    return ClickLog(identity(n).peer_id, ClickLogStore(store), GRankParams(), limits, counters), counters


def row(key: Identity, number: int, item="kob", terms=("jazz",)) -> SignedRow:
    return sign_row(key, ClickRow(key.peer_id, number, terms, False, (item,), item, "Kind of Blue", ("jazz",)))


def test_rows_in_new_ones_kept_duplicates_skipped_forgeries_named_as_offences():
    log, counters = new_log(1)
    alice = identity(2)
    first = log.receive("peer", [row(alice, 0), row(alice, 1), row(alice, 0)], now=0.0, met=NEVER_MET)
    assert first.taken == 2 and first.offences == [] and len(log.held[alice.peer_id]) == 2
    forged = SignedRow(row(alice, 2).row, b"\0" * 64)
    again = log.receive("peer", [row(alice, 1), forged], now=1.0, met=NEVER_MET)
    assert again.taken == 0 and len(again.offences) == 1 and "click row" in again.offences[0]
    assert counters.get("ranking", "rows_duplicate") == 2 and counters.get("ranking", "rows_rejected") == 1
    assert log.grank.rows == 2 and log.rows.click_row_count() == 2


def test_a_log_reopened_on_its_store_holds_what_it_held():
    store = Store.open(":memory:")
    log, _ = new_log(1, store=store)
    me = identity(1)
    log.record(ClickRow(me.peer_id, log.next_number, ("jazz",), False, ("kob",), "kob", "", ()), row(me, 0))
    log.receive("peer", [row(identity(2), n) for n in (0, 1, 3)], now=0.0, met=NEVER_MET)
    again, _ = new_log(1, store=store)
    assert (
        again.next_number == 1 and again.held[identity(2).peer_id].below == 2 and 3 in again.held[identity(2).peer_id]
    )
    assert again.digest() == log.digest() and again.grank.rows == 4


def test_two_logs_converge_by_digests_alone():
    a, _ = new_log(1)
    b, _ = new_log(2)
    a.receive("x", [row(identity(3), n) for n in range(5)], now=0.0, met=NEVER_MET)
    b.receive("y", [row(identity(4), n) for n in range(3)], now=0.0, met=NEVER_MET)
    for _ in range(2):  # each asks the other with its digest; the answer is what it lacks
        for asker, server in ((a, b), (b, a)):
            lacking = server.rows_not_in(asker.digest(), max_rows=100)
            asker.receive("peer", [SignedRow(r, s) for _, r, s in lacking], now=1.0, met=NEVER_MET)
    both = {(identity(3).peer_id, 5), (identity(4).peer_id, 3)}
    assert {(h.node, h.below) for h in a.digest()} == {(h.node, h.below) for h in b.digest()} == both
    assert b.rows_not_in(a.digest(), max_rows=100) == []


def test_the_pointer_of_the_papers_pull_sends_each_row_once():
    log, _ = new_log(1)
    log.receive("x", [row(identity(3), n) for n in range(5)], now=0.0, met=NEVER_MET)
    first = log.rows_after_pointer("asker", max_rows=3)
    log.advance("asker", first)
    rest = log.rows_after_pointer("asker", max_rows=10)
    log.advance("asker", rest)
    assert len(first) == 3 and len(rest) == 2 and log.rows_after_pointer("asker", max_rows=10) == []


def test_a_sender_over_its_rate_is_refused_and_the_rest_unread():
    log, counters = new_log(1, ClickLogLimits(rows_per_peer_minute=5, rows_per_issuer_minute=1000))
    rng = random.Random(0)
    keys = [Identity.from_seed(rng.randbytes(32)) for _ in range(8)]
    intake = log.receive("flooder", [row(k, 0) for k in keys], now=0.0, met=NEVER_MET)
    assert intake.taken == 5 and counters.get("ranking", "rows_refused_peer_rate") == 3
    assert log.room("flooder", 0.0, 1) == "peer_rate" and log.room("honest", 0.0, 1) is None


@pytest.mark.parametrize("met_friend", [False, True])
def test_past_the_caps_whole_never_met_issuers_go_first_and_stay_out(met_friend):
    log, counters = new_log(1, ClickLogLimits(max_rows=20, max_issuers=100))
    me, friend = identity(1), identity(2)
    log.record(ClickRow(me.peer_id, 0, ("jazz",), False, ("kob",), "kob", "", ()), row(me, 0))
    log.receive("x", [row(friend, n) for n in range(4)], now=0.0, met=NEVER_MET)
    rng = random.Random(1)
    strangers = [Identity.from_seed(rng.randbytes(32)) for _ in range(20)]
    log.receive("sybil", [row(k, 0) for k in strangers], now=1.0, met=NEVER_MET)
    assert log.over_caps()
    met = {friend.peer_id} if met_friend else set()
    chosen = log.evictions(met)
    assert me.peer_id not in chosen and friend.peer_id not in chosen  # strangers with one row each go first
    log.evict(chosen)
    assert not log.over_caps() and log.grank.rows == log.rows.click_row_count() <= 18
    assert counters.get("ranking", "issuers_evicted") == len(chosen)
    evicted = next(k for k in strangers if k.peer_id in chosen)
    back = log.receive("sybil", [row(evicted, 0)], now=2.0, met=NEVER_MET)  # an evicted issuer stays out
    assert back.taken == 0 and counters.get("ranking", "rows_refused_evicted") == 1
