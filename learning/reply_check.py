"""Check a federated participant's reply before any strategy sees it.

Flower's strategies trust their inputs: one NaN poisons FedAvg, FedMedian and FedTrimmedAvg
alike, a tensor of another shape ends the aggregation with an exception, and a claimed
``num-examples`` of 1e12 hands one client the whole weighted mean. So every reply is held
against the model the host sent in that round: only the records the task's clients send
(the model, the task's side records such as FED-PUB's embedding, the metrics; no config
record: a 7.5 MB junk one rode along with valid replies before), the same array names,
shapes and dtypes, finite values everywhere, finite metrics, and a positive, bounded weight.
A reply that fails is dropped for the round with a reason the host records.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
from flwr.app import ArrayRecord, Message

from .keys import ARRAYS, METRICS, NUM_EXAMPLES


def check_train_reply(
    reply: Message,
    sent: ArrayRecord,
    *,
    arrays_key: str = ARRAYS,
    side_records: Collection[str] = (),
    weight_key: str = NUM_EXAMPLES,
    max_weight: float = 1e6,
) -> str | None:
    """Why ``reply`` cannot be aggregated against the model ``sent``, or None if it can.

    Parameters
    ----------
    reply : Message
        A train reply without an error.
    sent : ArrayRecord
        The model the host sent for the round; the reply's ``arrays_key`` record must match
        its names, shapes and dtypes.
    side_records : collection of str (default: none)
        Other array records the task's clients send (FED-PUB's embedding, OFA's mask); each
        at most the model's size. Any other record is refused.
    weight_key : str (default: "num-examples")
        The metric the strategy weights by: required, finite, > 0 and <= ``max_weight``.
    """
    content = reply.content
    if arrays_key not in content.array_records:
        return f"no {arrays_key!r} array record"
    unexpected = unexpected_records(reply, arrays={arrays_key, *side_records})
    if unexpected:
        return unexpected
    got = content.array_records[arrays_key]
    if list(got.keys()) != list(sent.keys()):
        extra, missing = sorted(set(got) - set(sent)), sorted(set(sent) - set(got))
        return f"array names differ from the model's (extra {extra[:3]}, missing {missing[:3]})"
    budget = sum(_size(a) for a in sent.values())
    for record_name, record in content.array_records.items():
        if record_name != arrays_key and sum(_size(a) for a in record.values()) > budget:
            return f"array record {record_name!r} is larger than the model"
        for name, array in record.items():
            try:  # the declared shape is only a claim: decode and look at what is there
                values = array.numpy()
            except (TypeError, ValueError, EOFError, OSError) as exc:
                return f"{record_name}/{name} does not decode: {exc}"[:300]
            if record_name == arrays_key:
                expected = sent[name]
                if values.shape != tuple(expected.shape) or str(values.dtype) != expected.dtype:
                    return (
                        f"{name!r} is {values.dtype}{list(values.shape)}, "
                        f"the model's is {expected.dtype}{list(expected.shape)}"
                    )
            if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
                return f"non-finite values in {record_name}/{name}"
    return check_metrics(reply, weight_key=weight_key, max_weight=max_weight)


def unexpected_records(reply: Message, *, arrays: Collection[str] = ()) -> str | None:
    """Which records ``reply`` carries beyond the array records named and the metrics, if any."""
    content = reply.content
    extra = sorted(set(content.array_records) - set(arrays)) + sorted(set(content.metric_records) - {METRICS})
    extra += sorted(content.config_records)  # our clients send no config back
    return f"unexpected records {extra[:3]}" if extra else None


def check_metrics(reply: Message, *, weight_key: str = NUM_EXAMPLES, max_weight: float = 1e6) -> str | None:
    """Why the reply's metrics are unusable (non-finite, or a bad weight), or None."""
    metrics = reply.content.metric_records.get(METRICS)
    if metrics is None:
        return f"no {METRICS!r} record"
    for key, value in metrics.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            return f"metric {key!r} is not finite"
    weight = metrics.get(weight_key)
    if not isinstance(weight, int | float) or isinstance(weight, bool):
        return f"no numeric {weight_key!r} metric"
    if not 0 < weight <= max_weight:
        return f"{weight_key} = {weight:g} is outside (0, {max_weight:g}]"
    return None


def _size(array) -> int:
    return int(np.prod(array.shape)) if array.shape else 1
