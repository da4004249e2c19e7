"""FED-PUB's personalized aggregation as a Flower strategy (Baek et al., ICML 2023).

Built on Flower's ``FedAvg`` so sampling, configuration and metric aggregation behave as
every other Message-API strategy; only what each client receives differs.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from ..fedpub import similarity_weights
from ..keys import EMBEDDING, METRICS
from ..weighted import weighted_sum
from .records import to_record


class FedPub(FedAvg):
    """FED-PUB: each client gets theta_i = sum_j softmax_j(tau cos(h_i, h_j)) theta_j.

    Clients reply with their shared weights, ``num-examples`` and an ``embedding``
    ArrayRecord (their functional embedding). The returned global model (the FedAvg of the
    replies) is what clients new to the run receive.

    Parameters
    ----------
    tau : float (default: 3.0)
        Softmax temperature of the similarity weights (the paper uses 3 for disjoint and
        5 for overlapping partitions).
    **kwargs
        ``FedAvg``'s own (``min_train_nodes`` and so on).
    """

    def __init__(self, tau: float = 3.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tau = tau
        self.personal: dict[int, ArrayRecord] = {}

    def summary(self) -> None:
        super().summary()
        log(INFO, "\t└──> FED-PUB: tau %.1f, %d personalized models", self.tau, len(self.personal))

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return [self._personalise(m) for m in super().configure_train(server_round, arrays, config, grid)]

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return [self._personalise(m) for m in super().configure_evaluate(server_round, arrays, config, grid)]

    def _personalise(self, message: Message) -> Message:
        node = message.metadata.dst_node_id
        content = RecordDict(
            {
                self.arrayrecord_key: self.personal.get(node, message.content[self.arrayrecord_key]),
                self.configrecord_key: message.content[self.configrecord_key],
            }
        )
        return Message(content=content, message_type=message.metadata.message_type, dst_node_id=node)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(replies, is_train=True, validate=False)
        valid = [m for m in valid if self._well_formed(m)]
        if valid:  # every state and embedding must fit the first one's keys and shapes

            def layout(m: Message):
                return (
                    {k: tuple(v.shape) for k, v in m.content[self.arrayrecord_key].items()},
                    [tuple(v.shape) for v in m.content[EMBEDDING].values()],
                )

            first = layout(valid[0])
            valid = [m for m in valid if layout(m) == first]
        if not valid:
            return None, None
        nodes = [m.metadata.src_node_id for m in valid]
        states = [{k: v.numpy() for k, v in m.content[self.arrayrecord_key].items()} for m in valid]
        embeddings = np.stack([m.content[EMBEDDING].to_numpy_ndarrays()[0] for m in valid])
        sizes = np.array([float(m.content[METRICS][self.weighted_by_key]) for m in valid])
        alpha = similarity_weights(embeddings, self.tau)
        for i, node in enumerate(nodes):
            self.personal[node] = to_record(weighted_sum(states, alpha[i]))
        global_model = to_record(weighted_sum(states, sizes / sizes.sum()))
        metrics = self.train_metrics_aggr_fn(
            [RecordDict({METRICS: m.content[METRICS]}) for m in valid], self.weighted_by_key
        )
        return global_model, metrics

    def _well_formed(self, message: Message) -> bool:
        content = message.content
        ok = (
            self.arrayrecord_key in content.array_records
            and EMBEDDING in content.array_records
            and METRICS in content.metric_records
            and self.weighted_by_key in content[METRICS]
        )
        if not ok:
            log(
                INFO,
                "FED-PUB: dropping a reply from node %d without arrays, embedding or %s",
                message.metadata.src_node_id,
                self.weighted_by_key,
            )
        return ok
