"""Weight sharing for Once-for-All subnets as a Flower strategy.

Clients train subnets of different sizes inside one supernet (``learning.supernet``); each
supernet entry becomes the sample-weighted mean over the clients that trained it
(``learning.weight_sharing.aggregate``).
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import INFO

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from ..keys import MASK, METRICS
from ..weight_sharing import aggregate
from .records import to_record


class WeightSharing(FedAvg):
    """Aggregate updates of different OFA subnets into one supernet (``learning.weight_sharing``).

    Replies carry the whole supernet state, a ``mask`` ArrayRecord of the entries the client
    trained, and ``num-examples``; entries nobody trained keep the current value.
    """

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._current = {k: v.numpy() for k, v in arrays.items()}
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(replies, is_train=True, validate=False)
        updates = []
        for m in valid:
            content = m.content
            if not ({self.arrayrecord_key, MASK} <= set(content.array_records) and METRICS in content.metric_records):
                continue
            state = {k: v.numpy() for k, v in content[self.arrayrecord_key].items()}
            mask = {k: v.numpy().astype(bool) for k, v in content[MASK].items()}
            if set(state) != set(self._current) or set(mask) != set(self._current):
                continue
            updates.append((state, mask, float(content[METRICS][self.weighted_by_key])))
        if not updates:
            return None, None
        try:
            merged = aggregate(self._current, updates)
        except ValueError as exc:
            log(INFO, "weight sharing: dropping the round's updates: %s", exc)
            return None, None
        metrics = self.train_metrics_aggr_fn(
            [RecordDict({METRICS: m.content[METRICS]}) for m in valid], self.weighted_by_key
        )
        return to_record(merged), metrics
