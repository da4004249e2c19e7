"""The simulator over real libp2p: daemon processes, the same report, nothing left running."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeswarm.node.cli import app

SCENARIO = """
name = "libp2p-tiny"
transport = "libp2p"
nodes = 4
duration = 18.0
seed = 2
bootstrap = 1
sample_interval = 2.0
devices_dir = "{devices}"

[churn]
fraction = 0.34
start = 3.0
end = 9.0
mean_up = 2.0
mean_down = 2.0

[node.membership]
shuffle_interval = 1.0
request_timeout = 2.0

[node.presence]
interval = 1.0

[node.store]
persist_interval = 1.0
"""


def our_children() -> set[int]:
    """PIDs whose parent is this test process (what the runner started and still owns)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == os.getpid():
            children.add(int(stat.parent.name))
    return children


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return "edgeswarm.node" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")


def run(repo, tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text.format(devices=repo / "configs/devices"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sim", "run", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text()), out


@pytest.mark.slow  # 21 s of real daemons; what the runner refuses is tested below, daemons in test_daemons
def test_libp2p_scenario_reports_like_the_virtual_one(repo, tmp_path):
    """What the runner does, whatever the machine's speed: how well the overlay converges in
    18 wall-clock seconds depends on it, so that is measured (benchmarks/), not asserted."""
    before = our_children()
    report, out = run(repo, tmp_path, SCENARIO)
    assert our_children() == before  # every daemon it started was stopped and reaped
    last_pids = [int((lock).read_text()) for lock in (out / "nodes").glob("*/daemon.lock")]
    assert len(last_pids) == 4 and not any(alive(pid) for pid in last_pids)
    assert report["transport"] == "libp2p" and report["nodes"] == 4
    assert {"scenario", "seed", "virtual_seconds", "wall_seconds", "metrics", "timeseries"} <= report.keys()
    assert report["metrics"]["churn"]["crashes"] >= 1  # the schedule's crashes all fall within the run
    overlay = report["metrics"]["membership"]
    assert overlay["live"] == 4 and 0 <= overlay["coverage"] <= 1 and isinstance(overlay["strongly_connected"], bool)
    counters = report["metrics"]["counters"]  # the daemons' counters, summed over their sessions
    assert counters["membership"]["shuffle_ok"] > 0 and counters["msgs_in"]["presence.announce"] > 0
    assert len(list((out / "nodes").glob("*/node.sqlite"))) == 4


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[[partitions]]\nstart = 1.0\nend = 2.0\n", "partitions"),
        # a workload is refused, not silently skipped (the runner drives none on real daemons)
        ("[grank]\nqueries = 10\n", "grank workload runs on the virtual network only"),
    ],
)
def test_what_libp2p_cannot_run_is_refused_before_any_daemon_starts(repo, tmp_path, table, message):
    path = tmp_path / "s.toml"
    path.write_text((SCENARIO + "\n" + table).format(devices=repo / "configs/devices"))
    result = CliRunner().invoke(app, ["sim", "run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 3 and message in result.stderr
    assert not (tmp_path / "o" / "nodes").exists()


@pytest.mark.slow
def test_shipped_libp2p_local_scenario(repo, tmp_path):
    result = CliRunner().invoke(
        app, ["sim", "run", str(repo / "configs/sim/libp2p-local.toml"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["nodes"] == 8 and report["metrics"]["membership"]["strongly_connected"]
