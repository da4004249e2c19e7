"""A Flower ``ClientApp`` that trains this device's subnet inside the shared OFA supernet.

``context.node_config``: ``genome`` (comma-separated gene indexes: the subnet this device
selected), ``partition-id``, ``num-partitions``. Each round the client loads the supernet
weights it receives, trains its subnet on its share of the bundled images (plain SGD without
weight decay, so entries outside the subnet stay bit-identical), and replies with the whole
state, a ``mask`` ArrayRecord of the entries it trained, and its validation accuracy. The
``WeightSharing`` strategy folds those back into the supernet.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from . import supernet
from .keys import ARRAYS, CONFIG, MASK, METRICS, NUM_EXAMPLES
from .weight_sharing import touched


def genome_of(node_config: dict) -> np.ndarray:
    try:
        genome = np.array([int(v) for v in str(node_config["genome"]).split(",")], dtype=np.int64)
    except (KeyError, ValueError):
        raise ValueError("node config needs 'genome': comma-separated gene indexes of the selected subnet") from None
    supernet.EDGE.decode(genome)  # validates length and bounds
    return genome


def local_data(node_config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    parts, part = int(node_config.get("num-partitions", 1)), int(node_config.get("partition-id", 0))
    if not 0 <= part < parts:
        raise ValueError(f"partition-id {part} is outside 0..{parts - 1}")
    x, y = supernet.image_data()["train"]
    index = torch.arange(part, len(y), parts)
    return x[index], y[index]


def initial_model(node_config: dict, method: str = "", seed: int = 0) -> ArrayRecord:
    """The shipped supernet: federated rounds fine-tune it further."""
    return ArrayRecord({k: v.detach().clone() for k, v in supernet.load().state_dict().items()})


def data_identity(node_config: dict) -> dict[str, str]:
    return {"dataset": "digits16", "num-partitions": str(node_config.get("num-partitions"))}


def _net(arrays: ArrayRecord):
    net = supernet.build()
    net.load_state_dict(arrays.to_torch_state_dict())
    return net


def build_client_app() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        config = message.content[CONFIG]
        genome = genome_of(context.node_config)
        x, y = local_data(context.node_config)
        net = _net(message.content[ARRAYS])
        before = {k: v.detach().clone().numpy() for k, v in net.state_dict().items()}
        supernet.activate(net, genome)
        server_round = int(config.get("server-round", 0))
        rng = random.Random(hash((context.run_id, context.node_id, server_round)))
        torch.manual_seed(rng.getrandbits(63))
        optimizer = torch.optim.SGD(net.parameters(), lr=float(config.get("lr", 0.02)))  # no momentum, no decay
        net.train()
        for _ in range(int(config.get("local-epochs", 1))):
            for xb, yb in supernet.batches(x, y, 32, rng):
                optimizer.zero_grad()
                F.cross_entropy(net(xb), yb).backward()
                optimizer.step()
        after = {k: v.detach().clone().numpy() for k, v in net.state_dict().items()}
        mask = touched(before, after)
        accuracy = supernet.evaluate(supernet.subnet(net, genome), "val")
        content = RecordDict(
            {
                ARRAYS: ArrayRecord({k: torch.from_numpy(v) for k, v in after.items()}),
                MASK: ArrayRecord({k: torch.from_numpy(m.astype(np.uint8)) for k, m in mask.items()}),
                METRICS: MetricRecord(
                    {
                        NUM_EXAMPLES: len(y),
                        "val-acc": accuracy,
                        "trained-share": float(
                            sum(m.sum() for m in mask.values()) / sum(m.size for m in mask.values())
                        ),
                    }
                ),
            }
        )
        return Message(content=content, reply_to=message)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        genome = genome_of(context.node_config)
        model = supernet.subnet(_net(message.content[ARRAYS]), genome)
        metrics = MetricRecord(
            {
                NUM_EXAMPLES: len(supernet.image_data()["test"][1]),
                "val-acc": supernet.evaluate(model, "val"),
                "test-acc": supernet.evaluate(model, "test"),
            }
        )
        return Message(content=RecordDict({METRICS: metrics}), reply_to=message)

    return app


app = build_client_app()
