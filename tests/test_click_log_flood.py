"""A Sybil flood of click rows (throwaway issuers) is bounded: refused pushes, rates per sender and
issuer, caps with eviction of never-met issuers first, and pulls only from peers met."""

import random

import msgspec
import trio

from edgeswarm.node.config import MembershipConfig, NodeConfig, PresenceConfig, RankingConfig
from edgeswarm.node.identity import Identity
from edgeswarm.node.node import Node
from edgeswarm.node.ranking.click_log_limits import ClickLogLimits, RowAdmission
from edgeswarm.node.ranking.click_log_store import ClickLogStore
from edgeswarm.node.store import Store
from edgeswarm.protocols.membership.messages import Descriptor
from edgeswarm.protocols.network import RequestRefused, deadline
from edgeswarm.protocols.ranking.messages import ClickRow, PullReply, PullRequest, PushAck, PushRows, SignedRow
from edgeswarm.protocols.ranking.rows import sign_row
from edgeswarm.sim.virtual_network import LinkModel, VirtualNetwork

from conftest import identity, run_virtual

ITEMS = [("a", "Blue Train", ["jazz"]), ("b", "Kind of Blue", ["jazz"])]


def config(**ranking) -> NodeConfig:
    return NodeConfig(
        membership=MembershipConfig(view_size=4, shuffle_length=2),
        presence=PresenceConfig(enabled=False),
        ranking=RankingConfig(p_explore=0.0, **ranking),
    )


def junk_rows(count: int, seed: int) -> tuple[SignedRow, ...]:
    """Rows signed by ``count`` throwaway keys, one row each."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        key = Identity.from_seed(rng.randbytes(32))
        out.append(sign_row(key, ClickRow(key.peer_id, 0, ("jazz",), False, ("a",), "spam", "Spam" * 60, ("jazz",))))
    return tuple(out)


def test_eviction_prefers_never_met_issuers_then_fewest_rows_then_oldest():
    admission = RowAdmission(ClickLogLimits(max_rows=100, max_issuers=10))
    counts = {"me": 30, "friend": 5, "old-sybil": 1, "big-stranger": 40, "new-sybil": 1, "stranger": 3}
    assert not admission.over(80, 6) and admission.over(101, 6) and admission.over(80, 11)
    # 80 rows, 6 issuers; caps 100 / 10 are met, so nothing goes
    assert admission.choose_evictions(counts, {"friend"}, "me") == []
    admission = RowAdmission(ClickLogLimits(max_rows=100, max_issuers=5))  # 90%: 4 issuers at most
    assert admission.choose_evictions(counts, {"friend"}, "me") == ["old-sybil", "new-sybil"]
    assert admission.evicted("old-sybil") and not admission.evicted("friend")
    admission = RowAdmission(ClickLogLimits(max_rows=30, max_issuers=50))  # 27 rows at most: a friend goes too
    assert admission.choose_evictions(counts, {"friend"}, "me") == [
        "old-sybil",
        "new-sybil",
        "stranger",
        "big-stranger",
        "friend",
    ]


def test_the_log_is_bounded_in_megabytes_too():
    admission = RowAdmission(ClickLogLimits(max_log_mb=1.0))
    mb = 2**20
    assert not admission.over(10, 3, mb) and admission.over(10, 3, mb + 1)
    counts = {"me": 1, "a": 5, "b": 2, "c": 3}
    sizes = {"me": mb // 2, "a": mb // 4, "b": mb // 4, "c": mb // 4}  # 1.25 MB: down to 0.9 MB
    assert admission.choose_evictions(counts, set(), "me", sizes) == ["b", "c"]


def test_a_flood_of_the_largest_rows_stays_within_max_log_mb():
    async def scenario(attacker: Node, victim: Node):
        for seed in range(6):  # 600 rows of about 1.2 KB from as many issuers
            await victim.ranking.gossip.receive(attacker.peer_id, big_rows(100, seed))
        kept = victim.ranking.log.bytes.total()
        assert (
            kept <= 0.1 * 2**20
            and kept == victim.store.db.execute("SELECT SUM(LENGTH(row) + LENGTH(sig)) FROM click_log").fetchone()[0]
        )
        assert victim.status().counters["ranking"]["issuers_evicted"] > 0
        assert victim.ranking.grank.rows == ClickLogStore(victim.store).click_row_count() < 600

    _pair(config(), config(max_log_mb=0.1, rows_per_peer_minute=10_000, rows_per_minute=100_000), scenario)


def big_rows(count: int, seed: int) -> tuple[SignedRow, ...]:
    """Rows near the wire's bounds: 16 terms, a 256-character title, 16 tags, 20 shown items."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        key = Identity.from_seed(rng.randbytes(32))
        words = [f"w{rng.getrandbits(40):x}" for _ in range(40)]
        row = ClickRow(
            key.peer_id,
            0,
            tuple(sorted(set(words[:16]))),
            False,
            tuple(words[:20]),
            words[20],
            " ".join(words)[:256],
            tuple(words[24:40]),
        )
        out.append(sign_row(key, row))
    return tuple(out)


def test_rates_per_sender_and_per_issuer():
    admission = RowAdmission(ClickLogLimits(rows_per_peer_minute=60, rows_per_issuer_minute=3))
    assert [admission.admit("p", "i", 0.0) for _ in range(4)] == [None, None, None, "issuer_rate"]
    assert all(admission.admit("p", f"j{k}", 0.0) is None for k in range(57))
    assert admission.admit("p", "k", 0.0) == "peer_rate"
    assert admission.admit("q", "k", 0.0) is None  # another sender has its own budget
    assert admission.admit("p", "k", 1.0) is None  # one row a second comes back


def _pair(attacker_config: NodeConfig, victim_config: NodeConfig, scenario):
    async def main():
        net = VirtualNetwork(random.Random(0), LinkModel(latency_sigma=0))
        async with trio.open_nursery() as n:
            await n.start(net.run)
            async with net.attach(identity(1).peer_id) as ea, net.attach(identity(2).peer_id) as eb:
                nodes = []
                for k, (endpoint, cfg, peer) in enumerate(((ea, attacker_config, 2), (eb, victim_config, 1))):
                    node = Node(
                        identity=identity(k + 1),
                        network=endpoint,
                        store=Store.open(":memory:"),
                        config=cfg,
                        rng=random.Random(k),
                        clock=lambda: 1.8e9 + trio.current_time(),
                        bootstrap=[Descriptor(identity(peer).peer_id)],
                    )
                    if node.ranking is not None:
                        node.ranking.add_items(ITEMS)
                    await n.start(node.run)
                    nodes.append(node)
                await trio.sleep(15)  # a shuffle or two: they have met
                await scenario(*nodes)
                n.cancel_scope.cancel()

    run_virtual(main)


def test_pushed_rows_are_refused_unless_the_node_gossips_by_push():
    async def scenario(attacker: Node, victim: Node):
        try:
            with deadline(5):
                await attacker.messenger.request(victim.peer_id, PushRows(junk_rows(50, 1)), PushAck)
            raise AssertionError("pushed rows were taken")
        except RequestRefused as exc:
            assert "does not take pushed rows" in str(exc)
        assert victim.ranking.grank.rows == 0
        assert victim.status().counters["ranking"]["push_refused"] == 1

    _pair(config(), config(), scenario)


def test_batches_are_taken_one_at_a_time_and_pushes_refused_unread_once_the_budget_is_spent():
    """Three batches of 250 rows arrive together against a budget of 250: the first is taken
    whole, the others are refused without a row decoded (interleaved chunk by chunk, each took
    about a third). A push that comes later is refused before it is read, and told why."""

    async def scenario(attacker: Node, victim: Node):
        outcomes: list[int | str] = []

        async def receive(seed: int) -> None:
            try:
                outcomes.append(await victim.ranking.gossip.receive(attacker.peer_id, junk_rows(250, seed)))
            except Exception as exc:  # noqa: BLE001 - the refusal is what is compared
                outcomes.append(f"{type(exc).__name__}: {exc}")

        async with trio.open_nursery() as nursery:
            for seed in range(3):
                nursery.start_soon(receive, seed)
        assert sorted(outcomes, key=str) == [250, "_NoRoom: peer_rate", "_NoRoom: peer_rate"]
        counters = victim.status().counters["ranking"]
        assert counters["rows_received"] == 250 and victim.ranking.grank.rows == 250
        assert counters["rows_refused_peer_rate"] == 500
        with deadline(30):
            try:
                await attacker.messenger.request(victim.peer_id, PushRows(junk_rows(250, 3)), PushAck)
                raise AssertionError("a push beyond the budget was taken")
            except RequestRefused as exc:
                assert str(exc) == "no room for pushed rows now (peer_rate); push later"
        counters = victim.status().counters["ranking"]
        assert counters["push_refused_peer_rate"] == 1 and counters["rows_refused_peer_rate"] == 500
        assert victim.status().transport["requests_refused_unread"] == 1

    _pair(config(), config(gossip="push", rows_per_peer_minute=250), scenario)


def test_a_peer_serving_a_sybil_flood_in_pull_replies_is_held_to_its_rates_and_caps():
    """The attacker answers every pull with 500 rows of fresh throwaway issuers."""
    flood = iter(range(10**6))

    async def serve_junk(peer, request: PullRequest) -> PullReply:
        return PullReply(junk_rows(request.max_rows, next(flood)))

    async def scenario(attacker: Node, victim: Node):
        attacker.messenger.register(PullRequest, PullReply, PushRows, PushAck)
        attacker.messenger.on_request(PullRequest, serve_junk)  # the attacker's own ranking is off
        victim.ranking.search("jazz")
        await victim.ranking.click("a")  # our own row: never evicted
        for _ in range(8):  # 8 pulls within a minute: 4,000 rows offered
            await victim.ranking.gossip.pull_once(attacker.peer_id)
            await trio.sleep(5)
        counters = victim.status().counters["ranking"]
        assert counters["rows_received"] <= 1000 + 40 * 1000 // 60  # the sender's minute, and a refill
        assert counters["rows_refused_peer_rate"] >= 2000
        assert victim.ranking.grank.rows <= 500 and len(victim.ranking.log.held) <= 500  # the caps (and 90% after)
        assert (
            victim.ranking.grank.rows == ClickLogStore(victim.store).click_row_count()
        )  # evicted from G-Rank as from the log
        assert counters["issuers_evicted"] > 0
        assert victim.ranking.log.held[victim.peer_id].below == 1  # our own row stayed

    _pair(
        NodeConfig(
            membership=MembershipConfig(view_size=4, shuffle_length=2),
            presence=PresenceConfig(enabled=False),
            ranking=RankingConfig(enabled=False),
        ),
        config(rows_per_peer_minute=1000, max_rows=500, max_issuers=500),
        scenario,
    )


def test_pulls_go_only_to_peers_met_never_to_issuers_read_of():
    async def scenario(attacker: Node, victim: Node):
        await victim.ranking.gossip.receive(attacker.peer_id, junk_rows(20, 7))
        assert len(victim.ranking.log.held) == 20
        chosen = {victim.ranking.gossip._random_peer() for _ in range(50)}
        assert chosen <= {attacker.peer_id}  # the only peer met; none of the 20 issuers

    _pair(config(), config(), scenario)


def test_restart_reads_the_log_in_batches(tmp_path):
    store = Store.open(tmp_path / "s.sqlite")
    rows = junk_rows(30, 3)
    ClickLogStore(store).add_click_rows(
        [(msgspec.msgpack.decode(r.row, type=ClickRow).node, 0, r.row, r.sig) for r in rows]
    )
    assert list(ClickLogStore(store).iter_click_rows(batch=7)) == [r.row for r in rows]
