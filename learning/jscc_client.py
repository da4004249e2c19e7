"""The satellite-side trainer of SemSpaceFL: a Flower ``ClientApp`` for the JSCC model.

``context.node_config``: ``partition-id`` and ``num-partitions`` (its share of the bundled
images), and per run the ``association`` share and ``energy`` factor its join policy worked
out. The round's config gives ``local-steps``, ``snr-db``, ``channel`` and ``weighting``:
``semspace`` replies weight = D x association x energy (the SemSpaceFL gateway weight),
``data`` replies weight = D (FedAvg). The gateway's strategy is Flower's FedAvg weighted by
that ``weight`` metric.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from .jscc import JSCC, images, train_steps
from .keys import ARRAYS, CONFIG, METRICS, NUM_EXAMPLES, WEIGHT


def local_images(node_config: dict) -> torch.Tensor:
    parts, part = int(node_config.get("num-partitions", 1)), int(node_config.get("partition-id", 0))
    if not 0 <= part < parts:
        raise ValueError(f"partition-id {part} is outside 0..{parts - 1}")
    return images()["train"][part::parts]


def initial_model(node_config: dict, method: str = "", seed: int = 0) -> ArrayRecord:
    torch.manual_seed(seed)
    return ArrayRecord(JSCC().state_dict())


def data_identity(node_config: dict) -> dict[str, str]:
    return {"dataset": "digits16-grey", "num-partitions": str(node_config.get("num-partitions"))}


def build_client_app() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        config = message.content[CONFIG]
        data = local_images(context.node_config)
        model = JSCC()
        model.load_state_dict(message.content[ARRAYS].to_torch_state_dict())
        seed = hash((context.run_id, context.node_id, int(config.get("server-round", 0)))) % 2**31
        torch.manual_seed(seed)
        loss = train_steps(
            model,
            data,
            steps=int(config.get("local-steps", 10)),
            snr_db=float(config.get("snr-db", 10.0)),
            channel=str(config.get("channel", "awgn")),
            seed=seed,
        )
        samples = len(data)
        factor = 1.0
        if str(config.get("weighting", "data")) == "semspace":
            factor = float(context.node_config.get("association", 1.0)) * float(context.node_config.get("energy", 1.0))
        metrics = MetricRecord({NUM_EXAMPLES: samples, WEIGHT: samples * factor, "train-loss": loss})
        return Message(
            content=RecordDict({ARRAYS: ArrayRecord(model.state_dict()), METRICS: metrics}), reply_to=message
        )

    return app


app = build_client_app()
