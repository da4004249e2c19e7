"""What `pip install .` alone (no extras) must do: docs/install.md, "Installing only the core".

`make test` runs this module a second time in a fresh venv holding the core install and the
test tools only (`make test-core`), so a dependency missing from the core, or a release the
core's ranges allow that breaks a command, fails CI. Everything goes through the installed
`edgeswarm` console script, as a user types it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeswarm.sim.processes import DaemonGroup

pytestmark = pytest.mark.core

EDGESWARM = str(Path(sys.executable).with_name("edgeswarm"))
REPO = Path(__file__).resolve().parent.parent


def edgeswarm(*args: str, data_dir: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    more = ["--data-dir", str(data_dir)] if data_dir is not None else []
    done = subprocess.run([EDGESWARM, *args, *more], capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_every_command_group_starts():
    assert "Commands" in edgeswarm("--help").stdout
    for group in ("id", "node", "catalog", "fl", "lora", "subnet", "sim"):
        assert "Usage" in edgeswarm(group, "--help").stdout
    assert "dp-fedavg" in edgeswarm("fl", "host", "--help").stdout
    refused = edgeswarm("fl", "host", "--task", "subgraph", "--strategy", "fedbest", check=False)
    assert refused.returncode == 2 and "unknown strategy 'fedbest'" in refused.stderr


def test_two_nodes_search_and_click(tmp_path):
    with DaemonGroup(tmp_path / "swarm") as group:
        a = group.spawn("a")
        b = group.spawn("b", bootstrap=[a.status()["addresses"][0]])
        a_id = a.status()["peer_id"]
        assert edgeswarm("id", "show", data_dir=a.data_dir).stdout.strip() == a_id
        catalog = tmp_path / "catalog.csv"
        catalog.write_text("item,title,tags\nbt,Blue Train,jazz;hard bop\nkob,Kind of Blue,jazz;modal\n")
        for d in (a, b):
            assert "added 2 items" in edgeswarm("catalog", "add", str(catalog), data_dir=d.data_dir).stdout
        assert "Kind of Blue" in edgeswarm("search", "jazz", data_dir=a.data_dir).stdout
        assert "clicked kob" in edgeswarm("click", "kob", data_dir=a.data_dir).stdout
        edgeswarm("wait", "--in-view", a_id, "--timeout", "120", data_dir=b.data_dir)
        edgeswarm("search", "jazz", data_dir=b.data_dir)
        edgeswarm("click", "bt", data_dir=b.data_dir)  # pulls a's signed row on the way
        status = json.loads(edgeswarm("status", "--json", data_dir=b.data_dir).stdout)
        assert status["counters"]["ranking"]["rows_received"] == 1
        for d in (a, b):
            assert d.stop() == 0 and "stopped cleanly" in d.log()


def test_a_simulation_runs(tmp_path):
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(f"""
name = "tiny"
nodes = 20
duration = 300.0
seed = 3
bootstrap = 2
devices_dir = "{REPO / "configs/devices"}"
[devices]
phone = 0.5
laptop = 0.5
[churn]
fraction = 0.1
start = 60.0
end = 200.0
mean_up = 60.0
mean_down = 30.0
""")
    done = edgeswarm("sim", "run", str(scenario), "--out", str(tmp_path / "out"))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["nodes"] == 20 and report["metrics"]["churn"]["crashes"] >= 1
    assert 0 < report["metrics"]["membership"]["coverage"] <= 1
    assert "strongly connected" in done.stdout
