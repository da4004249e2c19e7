"""G-Rank on a click log from a file: the format's checks, the time split, and the replay."""

import pytest

from edgeswarm.node.config import ConfigError, NodeConfig, PresenceConfig, RankingConfig
from edgeswarm.node.subnet.device import DeviceProfile
from edgeswarm.sim.click_log_file import ClickLogError, LoggedClick, read_click_log, split_by_time
from edgeswarm.sim.replay_workload import ReplaySpec
from edgeswarm.sim.runner import run_scenario
from edgeswarm.sim.scenario import LoadedScenario, Scenario, load_scenario
from edgeswarm.sim.synthetic_click_log import generate

LAPTOP = DeviceProfile(
    name="laptop",
    cores=8,
    memory_mb=16384,
    compute_speed=1.0,
    latency_budget_ms=20,
    energy_budget_j=2000,
    uplink_mbps=40,
    downlink_mbps=200,
)
METHODS = {"grank", "popularity", "random", "local"}


def write(tmp_path, text, name="log.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_a_log_reads_seconds_and_iso_times_and_optional_shown_items(tmp_path):
    path = write(
        tmp_path,
        "query,user,item,timestamp,shown,extra\n"
        "blue jazz,ann,a1,1700000000,a1|a2 | a3,x\n"
        "rock,bob,b1,2023-11-14T22:13:21,,\n"
        "rock,bob,b2,2023-11-14T23:13:21+01:00,,\n",
    )
    rows = read_click_log(path)
    assert rows[0] == LoggedClick("ann", 1_700_000_000.0, "blue jazz", "a1", ("a1", "a2", "a3"))
    assert rows[1].time == 1_700_000_001.0 and rows[1].shown == ()  # no zone: UTC
    assert rows[2].time == rows[1].time  # the same instant, written in another zone


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user,query,item\nann,rock,a\n", r"log.csv:1: the header lacks timestamp"),
        ("user,timestamp,query,item\nann,yesterday,rock,a\n", r"log.csv:2: timestamp 'yesterday' is neither"),
        ("user,timestamp,query,item\nann,1,rock,a\nann,nan,rock,a\n", r"log.csv:3: timestamp 'nan' is not a finite"),
        ("user,timestamp,query,item\nann,1,!!!,a\n", r"log.csv:2: the query '!!!' has no word"),
        ("user,timestamp,query,item\nann,1,rock,\n", r"log.csv:2: empty item"),
        ("user,timestamp,query,item\n" + "ann,1," + "q" * 300 + ",a\n", r"log.csv:2: query longer than 256"),
        (
            "user,timestamp,query,item,shown\nann,1,rock,a," + "|".join(f"i{n}" for n in range(101)) + "\n",
            r"log.csv:2: more than 100 shown items",
        ),
        ("user,timestamp,query,item\n", r"log.csv: no rows after the header"),
        (b"user,timestamp,query,item\nann,1,rock,\xff\xfe\n", r"log.csv: not UTF-8 text"),
    ],
)
def test_a_bad_log_names_the_line_and_the_reason(tmp_path, text, message):
    with pytest.raises(ClickLogError, match=message):
        read_click_log(write(tmp_path, text))


def test_each_user_holds_out_their_last_clicks_by_time():
    clicks = [LoggedClick("ann", t, "rock", f"a{t}") for t in (5, 1, 4, 2, 3)] + [LoggedClick("bob", 9, "jazz", "b")]
    train, test = split_by_time(clicks, 0.4)
    assert [c.item for c in test] == ["a4", "a5"]  # ann's latest two of five; bob's only click trains
    assert [c.item for c in train] == ["a1", "a2", "a3", "b"]  # in time order
    assert [c.item for c in split_by_time(clicks[:2], 0.2)[1]] == ["a5"]  # two clicks: one is held out


def test_the_shipped_log_is_the_generators_output(repo):
    rows = read_click_log(repo / "configs/sim/data/clicks-small.csv")
    assert [(c.user, int(c.time), c.query, c.item) for c in rows] == generate()
    assert len({c.user for c in rows}) == 100 and len(rows) > 3000


def replay(log, *, nodes=12, users=24, anti_entropy=30.0, seed=3, churn=None):
    spec = ReplaySpec(log=str(log), users=users, replay_seconds=600.0, settle_seconds=200.0)
    node = NodeConfig(presence=PresenceConfig(enabled=False), ranking=RankingConfig(anti_entropy_interval=anti_entropy))
    scenario = Scenario(
        name="replay-small",
        nodes=nodes,
        duration=2000.0,
        seed=seed,
        bootstrap=2,
        join_window=10.0,
        sample_interval=60.0,
        node=node,
        replay=spec,
        **({"churn": churn} if churn else {}),
    )
    return run_scenario(LoadedScenario(scenario, {"laptop": LAPTOP}), out_dir=None)


def test_replaying_a_log_scores_every_held_out_click_for_each_method(repo):
    report = replay(repo / "configs/sim/data/clicks-small.csv")
    metrics = report["metrics"]
    assert metrics["users"] == 24 and metrics["replayed"] == metrics["train_clicks"] and metrics["missed_offline"] == 0
    assert metrics["held_out_scored"] == metrics["held_out"] > 50
    for name in ("rr10", "ndcg10", "success10"):
        assert set(metrics[name]) == METHODS and all(0 <= v <= 1 for v in metrics[name].values())
    # G-Rank learns from the replayed clicks: far above random order of the same candidates
    assert metrics["rr10"]["grank"] > metrics["rr10"]["random"] + 0.1
    assert metrics["success10"]["grank"] <= metrics["reachable"]  # nothing finds an item that is not a candidate
    # background gossip reaches every node, including those whose users stopped early
    assert metrics["log_coverage_min"] > 0.9 and metrics["nodes_below_10pct"] == 0
    series = report["replay_series"]
    assert len(series["t"]) == len(series["log_coverage"]) > 5 and series["t"] == sorted(series["t"])


def test_clicks_of_users_whose_device_is_off_are_lost_and_counted_not_fatal(repo):
    from edgeswarm.sim.scenario import ChurnSpec

    # half the nodes go up and down through the replay, and stay down past its end
    churn = ChurnSpec(fraction=0.5, start=0.0, end=5000.0, mean_up=60.0, mean_down=60.0)
    metrics = replay(repo / "configs/sim/data/clicks-small.csv", churn=churn)["metrics"]
    assert metrics["missed_offline"] > 0 and metrics["replayed"] + metrics["missed_offline"] == metrics["train_clicks"]
    assert metrics["held_out_scored"] + metrics["held_out_offline"] == metrics["held_out"]
    assert metrics["rr10"]["grank"] is not None


def test_shown_items_are_what_gets_ranked(tmp_path):
    """With a shown column the candidates are the shown items: a clicked item outside them is never found."""
    rows = ["user,timestamp,query,item,shown"]
    for t in range(8):  # both users click x for jazz, four times each; y is never shown
        rows.append(f"u{t % 2},{t},jazz,x,x|y|z")
    rows += ["u0,100,jazz,x,z|w", "u1,100,jazz,y,x|z"]  # held out: x was not shown to u0; y is missing for u1
    report = replay(write(tmp_path, "\n".join(rows) + "\n"), nodes=2, users=0)
    metrics = report["metrics"]
    assert metrics["held_out"] == 2 and metrics["reachable"] == 0.0
    assert all(v == 0.0 for name in ("rr10", "success10") for v in metrics[name].values())


def test_a_scenario_whose_log_is_missing_or_bad_is_refused_on_load(tmp_path, repo):
    head = f"devices_dir = '{repo / 'configs/devices'}'\nname = 'r'\nnodes = 4\nduration = 100.0\n[replay]\n"
    (tmp_path / "missing.toml").write_text(head + "log = 'nowhere.csv'\n")
    with pytest.raises(ConfigError, match=r"nowhere.csv: cannot read the click log"):
        load_scenario(tmp_path / "missing.toml")
    write(tmp_path, "user,timestamp,query,item\nann,soon,rock,a\n", "bad.csv")
    (tmp_path / "bad.toml").write_text(head + "log = 'bad.csv'\n")  # relative to the scenario file
    with pytest.raises(ConfigError, match=r"bad.csv:2: timestamp 'soon'"):
        load_scenario(tmp_path / "bad.toml")
    loaded = load_scenario(repo / "configs/sim/replay.toml")
    assert loaded.scenario.replay.log == str(repo / "configs/sim/data/clicks-small.csv")
