"""What a federated run looks like to its user: the host's request and the run's record.

``fl status`` shows ``RunRecord``s, kept in the store by ``RunBook`` so they outlive a
restart; ``edgeswarm fl host`` sends a ``RunSpec``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import msgspec

from edgeswarm.node.store import Store

if TYPE_CHECKING:  # the CLI reads LIVE without Flower installed
    from flwr.app import MetricRecord

MAX_RUNS = 256  # run records `fl status` shows


class RunSpec(msgspec.Struct, frozen=True):
    """What a host asks for (``edgeswarm fl host``)."""

    task: str
    strategy: str = "fedavg"
    rounds: int = 3
    min_clients: int = 2
    max_clients: int | None = None  # joins accepted at most; reaching it starts the run at once
    reply_timeout: float | None = None  # default: the node's config
    join_window: float | None = None
    train_config: dict[str, str | int | float | bool] = {}
    strategy_options: dict[str, str | int | float | bool] = {}
    requirements: dict[str, str] = {}  # announced beside the data identity, for joiners' policies


class RoundMetrics(msgspec.Struct):
    round: int
    status: str  # "ok" or "failed: <why>"
    replies: int
    failures: int
    train: dict[str, float]
    evaluate: dict[str, float]
    clients: dict[str, dict[str, float]]  # peer -> its own evaluate metrics (personal accuracy)
    seconds: float = 0.0  # train + evaluate, on the host's clock
    clients_train: dict[str, dict[str, float]] = {}  # peer -> its train reply metrics
    central: dict[str, float] = {}  # the host's own evaluation of the aggregated model
    rejected: dict[str, str] = {}  # peer -> why its reply was dropped before aggregation
    capped: dict[str, float] = {}  # peer -> the weight it claimed, where it was cut to the cap
    dropped: dict[str, str] = {}  # peer -> why it takes no part in the rounds after this one


class RunRecord(msgspec.Struct):
    """A run this node hosts or joined, as ``fl status`` shows it."""

    run_id: str
    role: str  # "host" or "client"
    task: str
    strategy: str
    rounds: int
    host: str
    state: str  # announced, running, done, degraded (some rounds failed), failed, joined, training, interrupted
    participants: list[str] = []
    history: list[RoundMetrics] = []
    detail: str = ""


LIVE = ("announced", "running", "joined", "training")  # a run not over yet
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(RunRecord).decode


def _read(blob: bytes) -> RunRecord | None:
    """A stored record, including those written before ``round_id`` was renamed ``run_id``."""
    try:
        return _decode(blob)
    except msgspec.DecodeError:
        pass
    try:
        fields = msgspec.msgpack.decode(blob)
        fields["run_id"] = fields.pop("round_id")
        return msgspec.convert(fields, RunRecord)
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, TypeError, AttributeError):
        return None


class RunBook(Mapping[str, RunRecord]):
    """The runs this node hosts or joined, newest last; each saved to the store on change.

    On start it reads the records back; a run that was live when the node stopped cannot go
    on (its Flower state was in memory), so it comes back as ``interrupted``. Without a
    store (tests) records live in memory only.
    """

    def __init__(self, store: Store | None = None) -> None:
        self._store = store
        self._records: dict[str, RunRecord] = {}
        for blob in self._stored() if store is not None else ():
            record = _read(blob)
            if record is None:
                continue  # written by another version: not shown, replaced on the next save
            if record.state in LIVE:
                record.state, record.detail = "interrupted", "the node stopped during the run"
            self._records[record.run_id] = record

    def add(self, record: RunRecord) -> None:
        self._records.pop(record.run_id, None)
        self._records[record.run_id] = record
        bound(self._records, MAX_RUNS)
        self.save(record)

    def save(self, record: RunRecord) -> None:
        """Write ``record``'s current state (after every change a user would want to see)."""
        if self._store is not None:
            self._put(record.run_id, _encode(record), keep=MAX_RUNS)

    def _put(self, run_id: str, record: bytes, keep: int) -> None:
        """Insert or replace a run's record (table ``fl_runs``) as the newest; keep the newest ``keep``."""
        assert self._store is not None
        db = self._store.db
        with self._store.transaction():
            db.execute("INSERT OR REPLACE INTO fl_runs (run_id, record) VALUES (?, ?)", (run_id, record))
            db.execute("DELETE FROM fl_runs WHERE seq <= (SELECT MAX(seq) FROM fl_runs) - ?", (keep,))

    def _stored(self) -> list[bytes]:
        """Every kept run record, least recently updated first."""
        assert self._store is not None
        return [r[0] for r in self._store.db.execute("SELECT record FROM fl_runs ORDER BY seq")]

    def __getitem__(self, run_id: str) -> RunRecord:
        return self._records[run_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


def bound(table: dict, size: int) -> None:
    """Drop the oldest entries of an insertion-ordered dict beyond ``size``."""
    while len(table) > size:
        table.pop(next(iter(table)))


def floats(record: MetricRecord | None) -> dict[str, float]:
    """A metric record's numbers as floats (what run records keep)."""
    if record is None:
        return {}
    return {k: float(v) for k, v in record.items() if isinstance(v, int | float)}
