"""The node-side trainer for subgraph FL: a standard Flower ``ClientApp``.

The same app answers our swarm's rounds and a real ``flower-supernode``. What a client
holds comes from ``context.node_config``: ``graph-source`` (``builtin`` or
``planetoid:<root>[:<name>]``), ``num-partitions``, ``partition-id``, ``partition-mode`` and
``seed``. The round's ``config`` picks the method:

- ``fedavg``: train and evaluate the received global model (plain GCN);
- ``fedpub``: load the received personalized weights under this client's own masks
  (kept in ``context.state``, never sent) and reply with its functional embedding;
- ``local``: ignore what arrives, keep training this client's own model.

Adam's moments persist across rounds in ``context.state``, as in the official FED-PUB code.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from .fedpub import (
    GCN,
    LocalTraining,
    accuracy,
    functional_embedding,
    load_shared,
    mask_state,
    proxy_graph,
    shared_state,
    train_epochs,
)
from .graphs import Graph, client_graphs, planetoid_source
from .keys import ARRAYS, CONFIG, EMBEDDING, METRICS, NUM_EXAMPLES

METHODS = ("fedavg", "fedpub", "local")


@lru_cache(maxsize=4)
def _federation(source: str, clients: int, mode: str, seed: int) -> tuple[tuple[Graph, ...], int]:
    graphs = tuple(client_graphs(source, clients, mode, seed))
    classes = int(max(int(g.y.max()) for g in graphs)) + 1
    return graphs, classes


def client_data(node_config: dict) -> tuple[Graph, int]:
    """This client's subgraph and the number of classes, from its node config."""
    try:
        source = str(node_config.get("graph-source", "builtin"))
        clients = int(node_config["num-partitions"])
        part = int(node_config["partition-id"])
        mode = str(node_config.get("partition-mode", "disjoint"))
        seed = int(node_config.get("seed", 1234))
    except KeyError as missing:
        raise ValueError(f"node config lacks {missing.args[0]!r} (need num-partitions and partition-id)") from None
    if not 0 <= part < clients:
        raise ValueError(f"partition-id {part} is outside 0..{clients - 1}")
    graphs, classes = _federation(source, clients, mode, seed)
    return graphs[part], classes


def data_identity(node_config: dict) -> dict[str, str]:
    """What every client of one federation must share: dataset, partitioning and seed.

    A Planetoid root directory differs between machines, so only the dataset name counts.
    """
    source = str(node_config.get("graph-source", "builtin"))
    if source.startswith("planetoid:"):
        source = "planetoid:" + planetoid_source(source)[1]
    return {
        "dataset": source,
        "num-partitions": str(node_config.get("num-partitions")),
        "partition-mode": str(node_config.get("partition-mode", "disjoint")),
        "seed": str(node_config.get("seed", 1234)),
    }


def initial_model(node_config: dict, method: str, seed: int = 0) -> ArrayRecord:
    """The starting global weights a round's host sends (same seed, same model everywhere)."""
    graph, classes = client_data(node_config)
    torch.manual_seed(seed)
    return ArrayRecord(shared_state(GCN(graph.num_features, classes, masked=method == "fedpub")))


def _settings(config: ConfigRecord) -> tuple[str, LocalTraining]:
    method = str(config.get("method", "fedavg"))
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (one of {', '.join(METHODS)})")
    defaults = LocalTraining()
    return method, LocalTraining(
        lr=float(config.get("lr", defaults.lr)),
        weight_decay=float(config.get("weight-decay", defaults.weight_decay)),
        epochs=int(config.get("local-epochs", defaults.epochs)),
        l1=float(config.get("l1", defaults.l1)),
        proximal=float(config.get("proximal", defaults.proximal)),
        regularise=str(config.get("regularise", defaults.regularise)),
    )


def _model(method: str, graph: Graph, classes: int, received: ArrayRecord, state: RecordDict) -> GCN:
    """The model this client works on this round (see the module docstring)."""
    model = GCN(graph.num_features, classes, masked=method == "fedpub")
    if method == "local" and "own-weights" in state:
        load_shared(model, state["own-weights"].to_torch_state_dict())
    else:
        load_shared(model, received.to_torch_state_dict())
    if method == "fedpub" and "masks" in state:
        model.load_state_dict(state["masks"].to_torch_state_dict(), strict=False)
    return model


def _optimizer(model: GCN, settings: LocalTraining, state: RecordDict) -> torch.optim.Adam:
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    if "adam" in state:
        saved = state["adam"].to_torch_state_dict()
        moments = {}
        for key, value in saved.items():
            index, name = key.split(".", 1)
            moments.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": moments, "param_groups": optimizer.state_dict()["param_groups"]})
    return optimizer


def _save_optimizer(optimizer: torch.optim.Adam, state: RecordDict) -> None:
    flat = {
        f"{i}.{name}": t.detach().clone().reshape(t.shape)
        for i, s in optimizer.state_dict()["state"].items()
        for name, t in s.items()
    }
    state["adam"] = ArrayRecord(flat)


def build_client_app() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        method, settings = _settings(message.content[CONFIG])
        graph, classes = client_data(context.node_config)
        server_round = int(message.content[CONFIG].get("server-round", 0))
        torch.manual_seed(hash((context.run_id, context.node_id, server_round)) % 2**63)  # reproducible dropout
        received = message.content[ARRAYS]
        model = _model(method, graph, classes, received, context.state)
        optimizer = _optimizer(model, settings, context.state)
        reference = received.to_torch_state_dict() if method == "fedpub" else None
        loss = train_epochs(model, graph, optimizer, settings, reference)
        _save_optimizer(optimizer, context.state)
        if method == "fedpub":
            context.state["masks"] = ArrayRecord(mask_state(model))
        if method == "local":
            context.state["own-weights"] = ArrayRecord(shared_state(model))
        scores = accuracy(model, graph, "val", "test")
        metrics = MetricRecord(
            {
                NUM_EXAMPLES: int(graph.train.sum()),
                "train-loss": loss,
                "val-acc": scores["val"][0],
                "test-acc": scores["test"][0],
            }
        )
        content = RecordDict({ARRAYS: ArrayRecord(shared_state(model)), METRICS: metrics})
        if method == "fedpub":
            h = functional_embedding(model, proxy_graph(graph.num_features))
            content[EMBEDDING] = ArrayRecord([h.astype("float32")])
        return Message(content=content, reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        method, _ = _settings(message.content[CONFIG])
        graph, classes = client_data(context.node_config)
        model = _model(method, graph, classes, message.content[ARRAYS], context.state)
        scores = accuracy(model, graph, "val", "test")
        metrics = MetricRecord(
            {NUM_EXAMPLES: scores["test"][1], "val-acc": scores["val"][0], "test-acc": scores["test"][0]}
        )
        return Message(content=RecordDict({METRICS: metrics}), reply_to=message)

    return app


app = build_client_app()
