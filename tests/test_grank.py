"""G-Rank formulas on hand-computed logs, and incremental updates equal a full recompute."""

import random

import pytest

from edgeswarm.learning.grank import Click, GRank, GRankParams, full_scores, normalise

LOG = [
    Click("i", ("rock",), "a"),
    Click("i", ("jazz",), "b"),
    Click("j", ("rock",), "a"),
    Click("j", ("rock",), "c"),
    Click("k", ("pop",), "d"),
]


def grank(log, **params):
    g = GRank("i", GRankParams(**params))
    for click in log:
        g.add(click)
    return g


def test_similarity_by_hand():
    g = grank(LOG)
    # j: kt = |{rock, jazz} & {rock}| = 1, km = |{a,b} & {a,c}| = 1, ku = |{a,b,c}| = 3
    #    -> (1 + 1) / 3 = 2/3, the largest, so 1 after normalising
    # k: kt = 0, km = 0, ku = 3 -> 0
    assert g.similarity("j") == pytest.approx(1.0)
    assert g.similarity("k") == 0.0
    assert g.similarity("i") == 1.0


def test_normalisation_divides_by_the_largest():
    log = LOG + [Click("k", ("rock",), "a")]
    g = grank(log)
    # k now: TopK {pop, rock} & {rock, jazz} = 1, km = |{a,b} & {d,a}| = 1, ku = 3 -> 2/3
    # j unchanged 2/3: both are the maximum
    assert g.similarity("j") == pytest.approx(1.0) and g.similarity("k") == pytest.approx(1.0)
    log = LOG + [Click("k", ("pop",), "b")]
    g = grank(log)
    # k: kt 0, km = |{a,b} & {d,b}| = 1, ku = 3 -> 1/3, half of j's 2/3
    assert g.similarity("k") == pytest.approx(0.5)


def test_scores_by_hand_with_and_without_isolation_constant():
    assert grank(LOG).scores("rock") == pytest.approx({"a": 2.0, "c": 1.0})
    assert grank(LOG, isolation=1.0).scores("Rock") == pytest.approx({"a": 4.0, "c": 2.0})
    assert grank(LOG).scores("pop") == {"d": 0.0}
    assert grank(LOG, isolation=1.0).scores("pop") == {"d": 1.0}
    assert grank(LOG).scores("metal") == {}


def test_counts_are_every_node_s_clicks_per_query():
    assert grank(LOG).counts("rock") == {"a": 2, "c": 1}
    assert grank(LOG).counts("metal") == {}


def test_top_k_limits_the_terms_compared():
    log = [Click("i", ("x",), "a"), Click("i", ("x",), "a"), Click("i", ("y",), "b"), Click("j", ("y",), "c")]
    # K = 1: TopK(i) = {x}, TopK(j) = {y}: no common term; km = 0 -> 0 similarity
    assert grank(log, top_k_terms=1).similarity("j") == 0.0
    # K = 2: {x, y} & {y} -> kt = 1, ku = |{a,b,c}| = 3 -> 1/3, normalised to 1
    assert grank(log, top_k_terms=2).similarity("j") == 1.0


def test_query_identity_is_its_normalised_terms():
    assert normalise("Rock  jazz rock") == ("jazz", "rock") == normalise(["JAZZ", "rock"])


@pytest.mark.parametrize("isolation", [0.0, 1.0])
@pytest.mark.parametrize("seed", range(5))
def test_incremental_equals_full_recompute(seed, isolation):
    rng = random.Random(seed)
    nodes = ["i"] + [f"n{k}" for k in range(8)]
    terms = [f"t{k}" for k in range(6)]
    items = [f"x{k}" for k in range(15)]
    params = GRankParams(top_k_terms=3, isolation=isolation)
    g = GRank("i", params)
    log = []
    for step in range(300):
        click = Click(rng.choice(nodes), normalise(rng.sample(terms, rng.choice([1, 1, 2]))), rng.choice(items))
        g.add(click)
        log.append(click)
        if step % 37 == 0 or step == 299:
            for query in {c.terms for c in log}:
                assert g.scores(query) == pytest.approx(full_scores(log, "i", query, params)), (step, query)


def index_of(items):
    from edgeswarm.learning.item_index import ItemIndex

    index = ItemIndex()
    for item, title, tags in items:
        index.add(item, title, tags)
    return index


def test_rank_returns_only_candidates_best_first():
    from edgeswarm.learning.grank import rank, rank_baseline

    index = index_of([("a", "Blue Train", ["jazz"]), ("c", "Kind of Blue", ["jazz", "modal"]), ("z", "Zed", ["jazz"])])
    g = grank(
        [Click("i", ("jazz",), "c"), Click("i", ("jazz",), "c"), Click("i", ("jazz",), "a"), Click("i", ("jazz",), "q")]
    )  # q: clicked for jazz but not tagged jazz here
    never = random.Random(0)

    def ranked(query, candidates=None):
        return rank(g, index.matches(query) if candidates is None else candidates, query, rng=never, p_explore=0.0)

    assert ranked("jazz") == ["c", "a", "z"]  # q was clicked for jazz, but the search did not find it
    assert ranked("blue") == ["c", "a"]  # unseen query: its candidates by popularity
    assert ranked("metal") == []  # nothing matches: nothing, not the most popular items
    assert ranked("jazz", candidates={"z", "q"}) == ["q", "z"]  # a log's shown items: q is one
    for kind in ("random", "popularity", "local"):
        assert set(rank_baseline(kind, g, {"a", "z"}, "jazz", rng=never)) == {"a", "z"}
        assert rank_baseline(kind, g, set(), "jazz", rng=never) == []
    swapped = rank(g, index.matches("jazz"), "jazz", rng=random.Random(1), p_explore=1.0)
    assert sorted(swapped) == ["a", "c", "z"] and swapped != ["c", "a", "z"]


def random_log(seed: int, steps: int = 300) -> list[Click]:
    rng = random.Random(seed)
    nodes = ["i"] + [f"n{k}" for k in range(8)]
    terms = [f"t{k}" for k in range(6)]
    items = [f"x{k}" for k in range(15)]
    return [
        Click(rng.choice(nodes), normalise(rng.sample(terms, rng.choice([1, 1, 2]))), rng.choice(items))
        for _ in range(steps)
    ]


def state(g: GRank) -> dict:
    queries = {c.terms for c in random_log(0)} | {("t0",), ("nothing",)}
    return {
        "rows": g.rows,
        "similarity": {n: round(g.similarity(n), 9) for n in ["i"] + [f"n{k}" for k in range(9)]},
        "scores": {q: {k: round(v, 9) for k, v in g.scores(q).items()} for q in queries},
        "counts": {q: g.counts(q) for q in queries},
        "popularity": g.popularity([f"x{k}" for k in range(16)]),
        "clicked_for": {q: g.clicked_for(q) for q in queries},
    }


@pytest.mark.parametrize("seed", range(3))
def test_forgetting_nodes_equals_never_having_seen_their_rows(seed):
    log = random_log(seed)
    params = GRankParams(top_k_terms=3)
    g = GRank("i", params)
    for click in log:
        g.add(click)
    g.forget(["n1", "n4", "i"])  # never ourselves
    kept = [c for c in log if c.node not in {"n1", "n4"}]
    assert state(g) == (state(grank(kept, top_k_terms=3)))
    for click in log[:40]:  # a forgotten node may come back: it starts from nothing
        g.add(click)
    assert state(g) == (state(grank(kept + log[:40], top_k_terms=3)))


def test_state_outlives_a_restart_and_a_new_k(tmp_path):
    import sqlite3

    log = random_log(4)
    db = sqlite3.connect(tmp_path / "g.sqlite", isolation_level=None)
    g = GRank("i", GRankParams(top_k_terms=3), db)
    for click in log:
        g.add(click)
    g.forget(["n2"])
    db.close()
    kept = [c for c in log if c.node != "n2"]
    again = GRank("i", GRankParams(top_k_terms=3), sqlite3.connect(tmp_path / "g.sqlite", isolation_level=None))
    assert state(again) == (state(grank(kept, top_k_terms=3)))
    other_k = GRank("i", GRankParams(top_k_terms=2), sqlite3.connect(tmp_path / "g.sqlite", isolation_level=None))
    assert state(other_k) == (state(grank(kept, top_k_terms=2)))


def test_item_index_matches_all_terms_and_updates():
    index = index_of([("a", "Blue Train", ["jazz"]), ("b", "Blue Monday", ["synth pop"])])
    assert index.matches("blue") == {"a", "b"} and index.matches("blue jazz") == {"a"}
    assert index.matches("pop") == {"b"} and index.matches("") == set()
    index.add("b", "Monday", ["pop"])
    assert index.matches("blue") == {"a"}
    assert index.meta("b") == ("Monday", ("pop",)) and index.meta("q") is None
    assert "b" in index and "q" not in index and len(index) == 2


def test_item_index_prefers_the_catalog_then_the_first_peer_and_forgets_by_source():
    from edgeswarm.learning.item_index import ItemIndex

    index = ItemIndex()
    index.add("a", "Blue Train", ["jazz"], source="peer1")
    index.add("a", "Spam Spam", ["spam"], source="peer2")  # a later row cannot rename it
    assert index.matches("blue") == {"a"} and index.matches("spam") == set()
    index.add("a", "Giant Steps", ["jazz"])  # the catalog's description wins
    assert index.matches("giant") == {"a"} and index.matches("blue") == set()
    assert index.meta("a") == ("Giant Steps", ("jazz",))
    index.add_many([("b", "Only Spam", [], "peer2"), ("c", "Blue Note", [], "peer1"), ("c", "Bop", [], "peer3")])
    assert index.metas(["b", "c", "q"]) == {"b": ("Only Spam", ()), "c": ("Blue Note", ())}
    index.forget(["peer2", "peer1"])  # their items leave the index; the catalog's stays
    assert "b" not in index and "c" not in index and index.matches("spam") == index.matches("note") == set()
    assert index.matches("giant") == {"a"}
    index.add("c", "Bop City", ["bop"], source="peer3")  # until another row describes them again
    assert index.meta("c") == ("Bop City", ("bop",)) and index.matches("bop") == {"c"}
