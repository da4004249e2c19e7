"""LoRA deltas between real daemons over libp2p, through the control API the CLI uses."""

from __future__ import annotations

import pytest

pytest.importorskip("peft")

from edgeswarm.node.control.client import ControlError
from edgeswarm.sim.processes import DaemonGroup

from conftest import FAST


def config(tmp_path, index: int):
    path = tmp_path / f"lora{index}.toml"
    path.write_text(
        FAST + f"\n[adapters]\nenabled = true\nnode_index = {index}\nnodes = 10\nclusters = 1\nepochs = 30\n"
    )
    return ["--config", str(path)]


def test_daemons_train_publish_pull_and_merge_adapters(tmp_path):
    with DaemonGroup(tmp_path / "swarm") as group:
        a = group.spawn("a", args=config(tmp_path, 0))
        b = group.spawn("b", bootstrap=[a.status()["addresses"][0]], args=config(tmp_path, 1))
        a.wait(gossip_peers=1)  # an announcement from a reaches b
        with pytest.raises(ControlError, match="lora train"):
            b.request({"cmd": "lora_merge"})  # nothing of its own yet
        own = a.request({"cmd": "lora_train"}, timeout=600)
        a.request({"cmd": "lora_publish"})
        b.wait(counters={"msgs_in.lora.announce": 1})
        assert own["digest"] in {r["digest"] for r in b.request({"cmd": "lora_list"})["adapters"]}
        fetched = b.request({"cmd": "lora_pull", "digest": own["digest"][:10]}, timeout=60)
        assert fetched["origin"] == "peer" and fetched["stored"] and fetched["signer"] == a.status()["peer_id"]
        b.request({"cmd": "lora_train"}, timeout=600)
        merged = b.request({"cmd": "lora_merge", "policy": "all"}, timeout=600)
        assert merged["peers"] == [own["digest"]] and 0 < merged["test_acc"] <= 1
        listing = b.request({"cmd": "lora_list"})
        assert listing["active"] == merged["digest"]
        assert {r["origin"] for r in listing["adapters"]} == {"own", "peer", "merged"}
    for daemon in group.daemons:
        assert "Traceback" not in daemon.log(), daemon.log()
