"""Poisoned federated replies are rejected before aggregation, recorded per round, and runs that
cannot work are refused before they start."""

import numpy as np
import pytest
import trio
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("flwr")

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from edgeswarm.learning.reply_check import check_train_reply
from edgeswarm.node.fl.catalog import STRATEGIES, check_run
from edgeswarm.protocols.fl import flower_wire

flower_wire.ensure_task_identity()  # Messages built outside Flower's runtime

SENT = ArrayRecord({"w": torch.zeros(3, 2), "b": torch.zeros(2)})


def reply(arrays: dict, examples=10, **records) -> Message:
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: torch.as_tensor(v) for k, v in arrays.items()}),
            "metrics": MetricRecord({"num-examples": examples, "train-loss": 0.5}),
        }
    )
    for name, record in records.items():
        content[name] = record
    return Message(content=content, dst_node_id=1, message_type="train")


def honest(**changes) -> dict:
    return {"w": np.ones((3, 2), np.float32), "b": np.ones(2, np.float32)} | changes


def test_a_reply_that_matches_the_model_passes():
    assert check_train_reply(reply(honest()), SENT) is None


@pytest.mark.parametrize(
    ("poisoned", "reason"),
    [
        (reply(honest(w=np.ones((4, 2), np.float32))), "'w' is float32[4, 2], the model's is float32[3, 2]"),
        (reply(honest(w=np.ones((3, 2), np.float64))), "'w' is float64[3, 2]"),
        (reply(honest(extra=np.ones(2, np.float32))), "array names differ from the model's (extra ['extra']"),
        (reply({"w": np.ones((3, 2), np.float32)}), "missing ['b']"),
        (reply(honest(b=np.array([1.0, np.nan], np.float32))), "non-finite values in arrays/b"),
        (reply(honest(w=np.full((3, 2), np.inf, np.float32))), "non-finite values in arrays/w"),
        (reply(honest(), examples=10**12), "num-examples = 1e+12 is outside (0, 1e+06]"),
        (reply(honest(), examples=0), "num-examples = 0 is outside"),
        (reply(honest(), examples=float("nan")), "metric 'num-examples' is not finite"),
        (reply(honest(), embedding=ArrayRecord([np.ones(100, np.float32)])), "'embedding' is larger than the model"),
        (reply(honest(), embedding=ArrayRecord([np.array([np.nan], np.float32)])), "non-finite values in embedding"),
        # only the records the task's clients send: no config (a 7.5 MB junk one rode along before)
        (reply(honest(), junk=ConfigRecord({"x": "y" * 1000})), "unexpected records ['junk']"),
        (reply(honest(), backdoor=ArrayRecord([np.ones(2, np.float32)])), "unexpected records ['backdoor']"),
        (reply(honest(), more=MetricRecord({"x": 1.0})), "unexpected records ['more']"),
    ],
)
def test_poisoned_replies_are_refused_with_the_reason(poisoned, reason):
    assert reason in check_train_reply(poisoned, SENT, side_records=("embedding",))


def test_a_side_record_of_another_task_is_refused():
    with_mask = reply(honest(), mask=ArrayRecord([np.ones(2, np.float32)]))
    assert check_train_reply(with_mask, SENT, side_records=("mask",)) is None
    assert "unexpected records ['mask']" in check_train_reply(with_mask, SENT, side_records=("embedding",))


def test_an_array_whose_bytes_contradict_its_declared_shape_is_refused():
    poisoned = reply(honest())
    array = poisoned.content["arrays"]["w"]
    array.data = np.ones((5, 5), np.float32).tobytes()  # not even an .npy any more
    assert "does not decode" in check_train_reply(poisoned, SENT)


@pytest.mark.parametrize("kind", ["nan", "shape", "extra-key", "inflate"])
def test_one_poisoning_client_is_rejected_every_round_and_the_run_still_learns(kind, small_fl):
    report = small_fl(strategies=["fedavg"], clients=5, min_clients=4, malicious=1, malicious_kind=kind)
    rounds = report["fl_series"]["fedavg"]["rounds"]
    assert [(r["status"], r["replies"], r["rejected"]) for r in rounds] == [("ok", 4, 1)] * 3
    assert report["metrics"]["accuracy"]["fedavg"] > 0.6
    assert report["metrics"]["counters"]["fl"]["replies_rejected"] == 3


def test_nan_updates_do_not_ruin_the_robust_strategies_either(small_fl):
    report = small_fl(
        strategies=["fedmedian", "fedtrimmedavg"], clients=6, min_clients=5, malicious=1, malicious_kind="nan"
    )
    assert all(report["metrics"]["accuracy"][s] > 0.6 for s in ("fedmedian", "fedtrimmedavg"))


def test_runs_that_cannot_work_are_refused_up_front():
    assert check_run("subgraph", "fedavg", 2) is None
    assert "cannot train task 'subgraph'" in check_run("subgraph", "weightsharing", 3)
    assert "cannot train task 'ofa'" in check_run("ofa", "fedpub", 3)
    assert "needs --min-clients 5" in check_run("subgraph", "fedtrimmedavg", 3)
    assert "needs --min-clients 5" in check_run("subgraph", "krum", 4)
    assert check_run("subgraph", "krum", 5) is None
    assert "unknown task" in check_run("images", "fedavg", 2)


def test_fl_host_refuses_an_impossible_pair_with_exit_2_before_calling_the_daemon(tmp_path):
    from edgeswarm.node.cli import app

    runner = CliRunner()
    result = runner.invoke(
        app, ["fl", "host", "--task", "subgraph", "--strategy", "weightsharing", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2 and "cannot train task 'subgraph'" in result.stderr
    trimmed = runner.invoke(
        app,
        [
            "fl",
            "host",
            "--task",
            "subgraph",
            "--strategy",
            "fedtrimmedavg",
            "--min-clients",
            "3",
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert trimmed.exit_code == 2 and "plain averaging" in trimmed.stderr
    unknown = runner.invoke(app, ["fl", "host", "--task", "subgraph", "--strategy", "fedbest"])
    assert unknown.exit_code == 2
    helped = runner.invoke(app, ["fl", "host", "--help"], terminal_width=200)
    assert all(name in helped.stdout for name in STRATEGIES)


def test_the_daemon_side_refuses_the_same_pairs():
    import random

    from edgeswarm.node.config import FederationConfig
    from edgeswarm.node.fl.federation import Federation, RunSpec

    class Offline:  # enough of a Messenger for a host that never gets to send
        local_peer = "12D3KooWhost"

        def register(self, *types):
            pass

        def on_request(self, *args):
            pass

    federation = Federation(
        Offline(), FederationConfig(enabled=True, tasks={"subgraph": {}}), random.Random(0), lambda: 0.0, None, None
    )
    with pytest.raises(ValueError, match="cannot train task 'subgraph'"):
        trio.run(federation.host, RunSpec(task="subgraph", strategy="weightsharing"))


def test_fedpub_drops_a_reply_whose_embedding_has_another_shape():
    from edgeswarm.learning.keys import EMBEDDING
    from edgeswarm.learning.strategies import FedPub

    def fedpub_reply(node: int, embedding_size: int) -> Message:
        message = reply(honest(), **{EMBEDDING: ArrayRecord([np.ones(embedding_size, np.float32)])})
        flower_wire.stamp(message, run_id=1, message_id=f"m{node}", src_node_id=node)  # as the grid does
        return message

    strategy = FedPub(tau=3.0)
    arrays, _ = strategy.aggregate_train(1, [fedpub_reply(1, 4), fedpub_reply(2, 4), fedpub_reply(3, 5)])
    assert arrays is not None and set(arrays.keys()) == {"w", "b"}
    assert set(strategy.personal) == {1, 2}  # the third, whose embedding does not fit, is left out


def test_silent_joiners_cost_one_reply_timeout_not_one_per_round(small_fl):
    """28 joiners that took tasks and never answered made every round last two timeouts."""
    report = small_fl(
        strategies=["fedavg"], clients=5, min_clients=3, malicious=2, malicious_kind="silent", reply_timeout=60.0
    )
    rounds = report["fl_series"]["fedavg"]["rounds"]
    assert [(r["status"], r["replies"], r["dropped"]) for r in rounds] == [("ok", 3, 2), ("ok", 3, 0), ("ok", 3, 0)]
    assert rounds[0]["seconds"] >= 60 and all(r["seconds"] < 60 for r in rounds[1:])  # virtual time, exact model
    assert report["metrics"]["state"] == {"fedavg": "done"}


@pytest.mark.parametrize(
    ("kind", "reason"), [("config-junk", "unexpected records ['junk']"), ("oversize", "over this round's limit")]
)
def test_junk_and_oversize_replies_are_rejected_and_never_wait_for_the_deadline(kind, reason, small_fl):
    report = small_fl(
        strategies=["fedavg"], clients=4, min_clients=3, malicious=1, malicious_kind=kind, reply_timeout=60.0
    )
    rounds = report["fl_series"]["fedavg"]["rounds"]
    assert [(r["status"], r["replies"], r["rejected"], r["failures"]) for r in rounds] == [("ok", 3, 1, 0)] * 3
    assert all(r["seconds"] < 60 for r in rounds)  # rejected on arrival, not a missed deadline
    assert report["metrics"]["counters"]["fl"]["replies_rejected"] == 3


def test_a_run_whose_rounds_fail_never_ends_done(small_fl):
    every = small_fl(strategies=["fedavg"], clients=4, min_clients=4, malicious=1, malicious_kind="nan")
    assert every["metrics"]["state"] == {"fedavg": "failed"} and every["metrics"]["rounds_ok"] == {"fedavg": 0}
    some = small_fl(strategies=["fedavg"], clients=4, min_clients=4, dropout=1, dropout_round=2)
    assert some["metrics"]["state"] == {"fedavg": "degraded"} and some["metrics"]["rounds_ok"] == {"fedavg": 1}


def test_a_run_takes_at_most_max_clients_and_starts_once_it_has_them(small_fl):
    report = small_fl(strategies=["fedavg"], clients=5, min_clients=3, max_clients=3, join_window=600.0)
    rounds = report["fl_series"]["fedavg"]["rounds"]
    assert [r["replies"] for r in rounds] == [3, 3, 3]
    assert report["metrics"]["counters"]["fl"]["joins_failed"] == 2  # refused: the run is full
    assert report["virtual_seconds"] < 600  # it did not wait out the join window
