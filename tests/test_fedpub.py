"""FED-PUB math, masked model, graph data and the FedPub strategy (learning layer)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from edgeswarm.learning.fedpub import (
    GCN,
    LocalTraining,
    _regularisers,
    functional_embedding,
    load_shared,
    proxy_graph,
    shared_state,
    similarity_weights,
)
from edgeswarm.learning.graphs import builtin_graph, largest_component, partition, split_nodes
from edgeswarm.learning.weighted import weighted_sum

# the shared, read-only datasets: beside the checkout, or where EDGESWARM_SHARED_DATA says
_CANDIDATES = [
    Path(os.environ["EDGESWARM_SHARED_DATA"]) if "EDGESWARM_SHARED_DATA" in os.environ else None,
    Path(__file__).resolve().parents[2] / "shared" / "data",
    Path("/work/shared/data"),
]
CORA = next(
    (c / "Planetoid" for c in _CANDIDATES if c is not None and (c / "Planetoid" / "Cora" / "raw").is_dir()),
    Path("/nonexistent"),
)


def test_similarity_weights_match_a_hand_computed_softmax():
    h = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])  # cos: 0~2 = 1, 0~1 = 0
    alpha = similarity_weights(h, tau=3.0)
    e3 = np.exp(3.0)
    assert alpha[0] == pytest.approx([e3 / (2 * e3 + 1), 1 / (2 * e3 + 1), e3 / (2 * e3 + 1)])
    assert alpha[1] == pytest.approx([1 / (e3 + 2), e3 / (e3 + 2), 1 / (e3 + 2)])
    assert alpha.sum(axis=1) == pytest.approx([1, 1, 1])


def test_weighted_sum_is_exact_and_refuses_mismatched_weights():
    a, b = {"w": np.array([1.0, 2.0])}, {"w": np.array([3.0, 6.0])}
    assert weighted_sum([a, b], np.array([0.25, 0.75]))["w"] == pytest.approx([2.5, 5.0])
    with pytest.raises(ValueError):
        weighted_sum([a, b], np.array([1.0]))


def test_masks_stay_on_the_client_and_survive_loading_shared_weights():
    model = GCN(8, 3)
    shared = shared_state(model)
    assert shared and not any(".mask" in k for k in shared)
    with torch.no_grad():
        model.conv1.lin.mask.fill_(0.5)
    other = {k: torch.zeros_like(v) for k, v in shared.items()}
    load_shared(model, other)
    assert torch.all(model.conv1.lin.weight == 0) and torch.all(model.conv1.lin.mask == 0.5)
    with pytest.raises(ValueError, match="do not fit"):
        load_shared(model, {**other, "extra": torch.zeros(1)})
    plain = GCN(8, 3, masked=False)
    assert set(shared_state(plain)) == set(shared)  # same shared keys with or without masks


def test_official_regularisers_add_no_gradient_and_grad_mode_does():
    model = GCN(4, 2)
    reference = {k: v + 1 for k, v in shared_state(model).items()}
    official = _regularisers(model, LocalTraining(regularise="official"), reference)
    assert not official.requires_grad and float(official) > 0
    live = _regularisers(model, LocalTraining(regularise="grad", l1=0.1, proximal=0.0), None)
    live.backward()
    assert torch.allclose(model.conv1.lin.mask.grad, torch.full_like(model.conv1.lin.mask, 0.1))  # d|m|/dm = sign


def test_functional_embedding_is_the_eval_mean_over_the_shared_proxy():
    proxy = proxy_graph(6)
    assert proxy.x.shape == (500, 6)
    src, dst = proxy.edge_index
    assert torch.all(src // 100 == dst // 100)  # no edges between the 5 blocks
    assert torch.equal(proxy_graph(6).x, proxy.x)  # fixed seed: every client sees the same graph
    model = GCN(6, 3, hidden=16)
    model.train()
    h1, h2 = functional_embedding(model, proxy), functional_embedding(model, proxy)
    assert h1.shape == (16,) and np.array_equal(h1, h2)  # eval mode: dropout off
    assert model.training  # restored


def test_disjoint_partition_covers_every_node_once_and_overlapping_halves_communities():
    x, edges, y = largest_component(*builtin_graph(nodes=300))
    graph = split_nodes(x, edges, y, seed=1)
    assert int(graph.train.sum()) == round(0.2 * graph.num_nodes)
    parts = partition(graph, 4)
    assert sum(p.num_nodes for p in parts) == graph.num_nodes
    assert all(p.edge_index.max() < p.num_nodes for p in parts)
    overlapping = partition(graph, 10, "overlapping")
    assert len(overlapping) == 10
    with pytest.raises(ValueError, match="multiple of 5"):
        partition(graph, 7, "overlapping")


@pytest.mark.skipif(not (CORA / "Cora" / "raw").is_dir(), reason="shared Cora files absent")
def test_cora_loads_from_read_only_raw_files_into_the_paper_setup():
    from edgeswarm.learning.graphs import client_graphs

    clients = client_graphs(f"planetoid:{CORA}:Cora", 10)
    assert sum(c.num_nodes for c in clients) == 2485  # Cora's largest connected component
    assert not (CORA / "Cora" / "processed").exists()  # nothing written beside the shared files


def test_a_planetoid_source_names_its_root_and_dataset_even_with_colons_in_the_root():
    from edgeswarm.learning.graphs import planetoid_source

    assert planetoid_source("planetoid:/data/P:citeseer") == (Path("/data/P"), "CiteSeer")
    assert planetoid_source("planetoid:/data/run:2/P:PubMed") == (Path("/data/run:2/P"), "PubMed")
    assert planetoid_source("planetoid:/data/run:2/P") == (Path("/data/run:2/P"), "Cora")  # no name: Cora
    assert planetoid_source("planetoid:/data/P") == (Path("/data/P"), "Cora")


@pytest.mark.skipif(not (CORA / "Cora" / "raw").is_dir(), reason="shared Cora files absent")
def test_a_planetoid_root_with_a_colon_in_its_path_loads(tmp_path):
    import shutil

    from edgeswarm.learning.graphs import client_graphs

    root = tmp_path / "run:2" / "Planetoid"
    shutil.copytree(CORA / "Cora" / "raw", root / "Cora" / "raw")
    clients = client_graphs(f"planetoid:{root}:Cora", 10)
    assert sum(c.num_nodes for c in clients) == 2485


def test_fedpub_strategy_sends_each_client_its_similarity_weighted_model():
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

    from edgeswarm.learning.strategies import FedPub
    from edgeswarm.protocols.fl import flower_wire
    from edgeswarm.protocols.fl.grid import SwarmGrid

    flower_wire.ensure_task_identity()
    grid = SwarmGrid(1, 99, send=None)
    grid._peers = {1: "a", 2: "b"}
    strategy = FedPub(tau=3.0, min_available_nodes=2)
    messages = list(strategy.configure_train(1, ArrayRecord({"w": torch.zeros(2)}), ConfigRecord(), grid))
    embeddings = {1: np.array([1.0, 0.0], np.float32), 2: np.array([1.0, 1.0], np.float32)}
    weights = {1: torch.tensor([1.0, 0.0]), 2: torch.tensor([0.0, 4.0])}
    replies = []
    for m in messages:
        node = m.metadata.dst_node_id
        flower_wire.stamp(m, run_id=1, message_id=f"m{node}", src_node_id=99)
        content = RecordDict(
            {
                "arrays": ArrayRecord({"w": weights[node]}),
                "embedding": ArrayRecord([embeddings[node]]),
                "metrics": MetricRecord({"num-examples": 10 * node}),
            }
        )
        replies.append(Message(content=content, reply_to=m))
    global_model, _ = strategy.aggregate_train(1, replies)
    alpha = similarity_weights(np.stack([embeddings[1], embeddings[2]]), 3.0)
    for i, node in enumerate((1, 2)):
        expected = alpha[i, 0] * weights[1].numpy() + alpha[i, 1] * weights[2].numpy()
        assert strategy.personal[node]["w"].numpy() == pytest.approx(expected, rel=1e-6)
    assert global_model["w"].numpy() == pytest.approx((10 * weights[1] + 20 * weights[2]).numpy() / 30)
    sent = {
        m.metadata.dst_node_id: m.content["arrays"]["w"].numpy()
        for m in strategy.configure_evaluate(2, global_model, ConfigRecord(), grid)
    }
    assert sent[1] == pytest.approx(strategy.personal[1]["w"].numpy())
    assert sent[2] == pytest.approx(strategy.personal[2]["w"].numpy())
