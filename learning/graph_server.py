"""A standard Flower ``ServerApp`` for the subgraph task, for ordinary Flower deployments.

On the swarm a node hosts rounds itself (``node.federation``); this app is what a
``flower-superlink`` runs when the same ClientApp (``graph_client.app``) is deployed the
usual Flower way. Run config: ``num-server-rounds``, ``min-nodes``, ``graph-source``,
``num-partitions`` and, optionally, ``result-file`` (JSON of the metrics, for scripts).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from .graph_client import initial_model

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    minimum = int(config.get("min-nodes", 2))
    node_config = {
        "graph-source": str(config.get("graph-source", "builtin")),
        "num-partitions": int(config.get("num-partitions", minimum)),
        "partition-id": 0,
    }
    strategy = FedAvg(min_train_nodes=minimum, min_evaluate_nodes=minimum, min_available_nodes=minimum)
    started = time.time()
    result = strategy.start(
        grid=grid,
        initial_arrays=initial_model(node_config, "fedavg"),
        num_rounds=int(config.get("num-server-rounds", 1)),
        train_config=ConfigRecord({"method": "fedavg"}),
        evaluate_config=ConfigRecord({"method": "fedavg"}),
    )
    if config.get("result-file"):
        path = Path(str(config["result-file"]))
        partial = path.with_name(path.name + ".partial")
        partial.write_text(
            json.dumps(
                {
                    "seconds": time.time() - started,
                    "train": {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()},
                    "evaluate": {str(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
                }
            )
        )
        partial.replace(path)  # whoever sees the file sees all of it
