"""Flower strategies of our own: FED-PUB's personalized aggregation.

Built on Flower's ``FedAvg`` so sampling, configuration and metric aggregation behave as
every other Message-API strategy; only what each client receives differs.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from .fedpub import similarity_weights, weighted_sum

EMBEDDING_KEY = "embedding"


class FedPub(FedAvg):
    """FED-PUB: each client gets theta_i = sum_j softmax_j(tau cos(h_i, h_j)) theta_j.

    Clients reply with their shared weights, ``num-examples`` and an ``embedding``
    ArrayRecord (their functional embedding). The returned global model (the FedAvg of the
    replies) is what clients new to the run receive.
    """

    def __init__(self, tau: float = 3.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tau = tau
        self.personal: dict[int, ArrayRecord] = {}

    def summary(self) -> None:
        super().summary()
        log(INFO, "\t└──> FED-PUB: tau %.1f, %d personalized models", self.tau, len(self.personal))

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return [self._personalise(m) for m in super().configure_train(server_round, arrays, config, grid)]

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return [self._personalise(m) for m in super().configure_evaluate(server_round, arrays, config, grid)]

    def _personalise(self, message: Message) -> Message:
        node = message.metadata.dst_node_id
        content = RecordDict({
            self.arrayrecord_key: self.personal.get(node, message.content[self.arrayrecord_key]),
            self.configrecord_key: message.content[self.configrecord_key],
        })
        return Message(content=content, message_type=message.metadata.message_type, dst_node_id=node)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(replies, is_train=True, validate=False)
        valid = [m for m in valid if self._well_formed(m)]
        if valid:  # every state and embedding must fit the first one's keys and shapes
            def layout(m: Message):
                return ({k: tuple(v.shape) for k, v in m.content[self.arrayrecord_key].items()},
                        [tuple(v.shape) for v in m.content[EMBEDDING_KEY].values()])

            first = layout(valid[0])
            valid = [m for m in valid if layout(m) == first]
        if not valid:
            return None, None
        nodes = [m.metadata.src_node_id for m in valid]
        states = [{k: v.numpy() for k, v in m.content[self.arrayrecord_key].items()} for m in valid]
        embeddings = np.stack([m.content[EMBEDDING_KEY].to_numpy_ndarrays()[0] for m in valid])
        sizes = np.array([float(m.content["metrics"][self.weighted_by_key]) for m in valid])
        alpha = similarity_weights(embeddings, self.tau)
        for i, node in enumerate(nodes):
            self.personal[node] = _record(weighted_sum(states, alpha[i]))
        global_model = _record(weighted_sum(states, sizes / sizes.sum()))
        metrics = self.train_metrics_aggr_fn([RecordDict({"metrics": m.content["metrics"]}) for m in valid],
                                             self.weighted_by_key)
        return global_model, metrics

    def _well_formed(self, message: Message) -> bool:
        content = message.content
        ok = (self.arrayrecord_key in content.array_records and EMBEDDING_KEY in content.array_records
              and "metrics" in content.metric_records and self.weighted_by_key in content["metrics"])
        if not ok:
            log(INFO, "FED-PUB: dropping a reply from node %d without arrays, embedding or %s",
                message.metadata.src_node_id, self.weighted_by_key)
        return ok


def _record(state: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})


class WeightSharing(FedAvg):
    """Aggregate updates of different OFA subnets into one supernet (``learning.weight_sharing``).

    Replies carry the whole supernet state, a ``mask`` ArrayRecord of the entries the client
    trained, and ``num-examples``; entries nobody trained keep the current value.
    """

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        self._current = {k: v.numpy() for k, v in arrays.items()}
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        from .weight_sharing import aggregate

        valid, _ = self._check_and_log_replies(replies, is_train=True, validate=False)
        updates = []
        for m in valid:
            content = m.content
            if not ({self.arrayrecord_key, "mask"} <= set(content.array_records) and "metrics" in content.metric_records):
                continue
            state = {k: v.numpy() for k, v in content[self.arrayrecord_key].items()}
            mask = {k: v.numpy().astype(bool) for k, v in content["mask"].items()}
            if set(state) != set(self._current) or set(mask) != set(self._current):
                continue
            updates.append((state, mask, float(content["metrics"][self.weighted_by_key])))
        if not updates:
            return None, None
        try:
            merged = aggregate(self._current, updates)
        except ValueError as exc:
            log(INFO, "weight sharing: dropping the round's updates: %s", exc)
            return None, None
        metrics = self.train_metrics_aggr_fn([RecordDict({"metrics": m.content["metrics"]}) for m in valid],
                                             self.weighted_by_key)
        return _record(merged), metrics
