"""Federated rounds on a node: host a Flower run over the swarm, or join one.

Hosting: gossip a signed ``RoundAnnounce``, accept ``Join`` requests for the join window,
then drive a Flower strategy round by round over a ``SwarmGrid`` (the loop mirrors
``Strategy.start``, awaiting the network instead of blocking on it). Every reply is checked
against the round's model before the strategy sees it (``learning.reply_check``: names,
shapes, dtypes, finite values, a bounded weight); failures are dropped and recorded per
round. A round with fewer valid replies than the minimum keeps the previous model and is
marked failed; a run whose strategy raises ends as failed, the node carries on.

Joining: offered tasks (``[node.federation.tasks]``) are joined on announcement (or by
``join``); each ``Task`` is acknowledged at once, run through the task's ``ClientApp`` on
``Compute``, and answered with a ``Result``. Payloads over the inline limit move as blobs.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import numpy as np
import trio
from flwr.app import ConfigRecord, Context, Error, Message, MetricRecord, RecordDict

from edgeswarm.learning.reply_check import check_metrics, check_train_reply
from edgeswarm.protocols.fl import flower_wire
from edgeswarm.protocols.blobs import BlobError, BlobRef, BlobShelf, fetch
from edgeswarm.protocols.fl.grid import SwarmGrid, flower_node_id
from edgeswarm.protocols.fl.messages import INLINE_BYTES, MESSAGES, Ack, Join, JoinReply, Result, RoundAnnounce, Task
from edgeswarm.protocols.envelope import Rejected
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import NetworkError, RequestRefused
from edgeswarm.protocols.peer_id import PeerId

from .compute import Compute
from .config import FederationConfig
from .fl_catalog import check_run
from .fl_tasks import TASKS, make_strategy, meets, requirements, round_config


log = logging.getLogger(__name__)

CLIENT_APP_FAILED = 3  # Error code of a reply whose ClientApp raised
MAX_ANNOUNCED = 1000  # announced runs remembered
MAX_MODELS = 8  # latest aggregated models kept, one per hosted run
MAX_JOINED = 64  # joined runs whose client state is kept (oldest dropped first)
MAX_RUNS = 256  # run records `fl status` shows


class RoundSpec(msgspec.Struct, frozen=True):
    """What a host asks for (``edgeswarm fl host``)."""

    task: str
    strategy: str = "fedavg"
    rounds: int = 3
    min_clients: int = 2
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


class RunRecord(msgspec.Struct):
    """A run this node hosts or joined, as ``fl status`` shows it."""

    round_id: str
    role: str  # "host" or "client"
    task: str
    strategy: str
    rounds: int
    host: str
    state: str  # announced, running, done, failed, joined
    participants: list[str] = []
    history: list[RoundMetrics] = []
    detail: str = ""


class _Hosted:
    def __init__(self, record: RunRecord, grid: SwarmGrid, join_until: float, task: str) -> None:
        self.record = record
        self.grid = grid
        self.join_until = join_until
        self.task = task
        self.open = True
        self.strategy: Any = None
        self.timeout = 0.0
        self.join_window = 0.0
        self.initial: Any = None
        self.evaluate: Callable[[Any], dict[str, float]] | None = None


class _Joined:
    def __init__(self, record: RunRecord, host: PeerId, context: Context, task: str) -> None:
        self.record = record
        self.host = host
        self.context = context
        self.task = task


class Federation:
    """The federation service of one node (see the module docstring)."""

    def __init__(self, messenger: Messenger, config: FederationConfig, rng: random.Random,
                 clock: Callable[[], float], compute: Compute, shelf: BlobShelf) -> None:
        self.messenger = messenger
        self.config = config
        self.rng = rng
        self.clock = clock
        self.compute = compute
        self.shelf = shelf
        self.client_apps = {name: task.client_app for name, task in TASKS.items()}
        """The ClientApp run for each task (the simulator swaps in attackers' apps here)."""
        self.async_apps: dict[str, Callable[[Message, Context], Awaitable[Message]]] = {}
        """Tasks answered by async code on this node instead of a ClientApp (a gateway's
        reply to the cloud is a regional run of its own)."""
        self.join_policy: Callable[[RoundAnnounce], dict[str, Any] | None] | None = None
        """Decides whether to join an offered run and adds per-run node config (a satellite's
        association share and energy factor); None joins every matching run."""
        self.runs: dict[str, RunRecord] = {}
        self.models: dict[str, Any] = {}  # the latest aggregated model of each run this node hosts
        self.announced: dict[str, tuple[PeerId, RoundAnnounce]] = {}
        self._hosted: dict[str, _Hosted] = {}
        self._joined: dict[str, _Joined] = {}
        self._counter = 0
        self._nursery: trio.Nursery | None = None
        self._max_payload = int(config.max_payload_mb * 1024 * 1024)
        for task in config.tasks:
            if task not in TASKS:
                raise ValueError(f"[node.federation.tasks] offers unknown task {task!r} (known: {', '.join(TASKS)})")
        flower_wire.ensure_task_identity()
        messenger.register(*MESSAGES)
        messenger.on_request(Join, self._on_join)
        messenger.on_request(Task, self._on_task)
        messenger.on_request(Result, self._on_result)

    @property
    def me(self) -> PeerId:
        return self.messenger.local_peer

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            subscription = self.messenger.subscribe(RoundAnnounce)
            task_status.started()
            async for opened in subscription:
                self._on_announce(opened.sender, opened.body)

    # ---- joining ---------------------------------------------------------------------
    def _on_announce(self, host: PeerId, announce: RoundAnnounce) -> None:
        if host == self.me or announce.round_id in self.announced:
            return
        self.announced[announce.round_id] = (host, announce)
        _bound(self.announced, MAX_ANNOUNCED)  # forget the oldest: a flood cannot grow memory
        offered = self.config.tasks.get(announce.task)
        if self.config.auto_join and offered is not None and meets(announce.requirements, announce.task, offered) \
                and self._nursery is not None and (self.join_policy is None or self.join_policy(announce) is not None):
            self._nursery.start_soon(self._join_quietly, announce.round_id)

    async def _join_quietly(self, round_id: str) -> None:
        try:
            await self.join(round_id)
        except (NetworkError, ValueError):
            pass  # the host is gone or full; the run is simply not joined

    async def join(self, round_id: str) -> RunRecord:
        """Join an announced run whose task this node offers; raises ValueError if refused."""
        if round_id in self._joined:
            return self._joined[round_id].record
        if round_id not in self.announced:
            raise ValueError(f"no announced run {round_id!r}")
        host, announce = self.announced[round_id]
        if announce.task not in self.config.tasks:
            raise ValueError(f"this node does not offer task {announce.task!r}")
        if not meets(announce.requirements, announce.task, self.config.tasks[announce.task]):
            raise ValueError(f"this node's {announce.task!r} config does not match the run's {announce.requirements}")
        reply = await self.messenger.request(host, Join(round_id, announce.task), JoinReply,
                                             timeout=self.config.chunk_timeout)
        if not reply.accepted:
            raise ValueError(f"host refused: {reply.reason}")
        node_config = dict(self.config.tasks[announce.task])
        if self.join_policy is not None:
            extra = self.join_policy(announce)
            if extra is None:
                raise ValueError("this node's join policy declines the run")
            node_config |= extra
        run_id = _run_id(round_id)
        context = Context(run_id=run_id, node_id=reply.node_id, node_config=node_config, state=RecordDict(),
                          run_config={})
        record = RunRecord(round_id, "client", announce.task, announce.strategy, announce.rounds, str(host), "joined")
        self._joined[round_id] = _Joined(record, host, context, announce.task)
        self.runs[round_id] = record
        _bound(self._joined, MAX_JOINED)  # a client's state per run (masks, optimizer) is not kept forever
        _bound(self.runs, MAX_RUNS)
        return record

    async def _on_task(self, peer: PeerId, task: Task) -> Ack:
        joined = self._joined.get(task.round_id)
        if joined is None or joined.host != peer:
            return Ack(False, "not a participant of that run with that host")
        if (task.inline is None) == (task.blob is None):
            return Ack(False, "a task carries either inline bytes or a blob")
        assert self._nursery is not None
        self._nursery.start_soon(self._work, joined, task)
        return Ack(True)

    async def _work(self, joined: _Joined, task: Task) -> None:
        """Fetch, decode, run the ClientApp, reply; any failure only loses this one task."""
        try:
            data = task.inline if task.blob is None else await self._fetch(joined.host, task.blob)
            message = flower_wire.decode(data)
            if message.metadata.dst_node_id != joined.context.node_id:
                return
            joined.record.state = "training"
            if joined.task in self.async_apps:
                reply = await self.async_apps[joined.task](message, joined.context)
            else:
                app = self.client_apps[joined.task]
                reply = await self.compute.run(lambda: _call(app, message, joined.context),
                                               reference_seconds=TASKS[joined.task].reference_seconds)
            flower_wire.stamp(reply, run_id=joined.context.run_id, message_id=f"r-{message.metadata.message_id}",
                              src_node_id=joined.context.node_id)
            await self._send(joined.host, Result, task.round_id, flower_wire.encode(reply))
            joined.record.state = "joined"
        except (BlobError, flower_wire.WireError, NetworkError, Rejected, ValueError):
            joined.record.state = "joined"

    # ---- hosting ---------------------------------------------------------------------
    async def host(self, spec: RoundSpec, *, on_round: Callable[[RoundMetrics], None] | None = None,
                   initial: Any = None, evaluate: Callable[[Any], dict[str, float]] | None = None) -> RunRecord:
        """Announce, gather joins, run ``spec.rounds`` rounds; returns the run's record.

        ``initial`` (an ArrayRecord) replaces the task's starting model; ``evaluate`` scores
        each round's aggregated model on the host (Flower's centralised evaluation). The
        final model is ``self.models[round_id]``.
        """
        hosted = await self._announce(spec)
        hosted.initial, hosted.evaluate = initial, evaluate
        await self._drive(hosted, spec, on_round)
        return hosted.record

    async def start_host(self, spec: RoundSpec) -> str:
        """Announce a run and drive it in the background (``fl host``); returns its round id."""
        if self._nursery is None:
            raise ValueError("the federation service is not running")
        hosted = await self._announce(spec)
        self._nursery.start_soon(self._drive, hosted, spec, None)
        return hosted.record.round_id

    async def _announce(self, spec: RoundSpec) -> _Hosted:
        if spec.task not in TASKS:
            raise ValueError(f"unknown task {spec.task!r} (known: {', '.join(TASKS)})")
        if spec.task not in self.config.tasks:
            raise ValueError(f"the host must offer task {spec.task!r} too (it builds the initial model from it)")
        if spec.rounds < 1 or spec.min_clients < 1:
            raise ValueError("rounds and min_clients must be at least 1")
        problem = check_run(spec.task, spec.strategy, spec.min_clients)
        if problem:
            raise ValueError(problem)
        strategy = make_strategy(spec.strategy, spec.min_clients, spec.strategy_options)
        self._counter += 1
        round_id = f"{str(self.me)[-8:]}-{self._counter}-{self.rng.getrandbits(32):08x}"
        grid = SwarmGrid(_run_id(round_id), flower_node_id(self.me), lambda peer, data: self._send(peer, Task, round_id, data))
        join_window = spec.join_window or self.config.join_window
        timeout = spec.reply_timeout or self.config.reply_timeout
        record = RunRecord(round_id, "host", spec.task, spec.strategy, spec.rounds, str(self.me), "announced")
        hosted = _Hosted(record, grid, self.clock() + join_window, spec.task)
        hosted.strategy, hosted.timeout, hosted.join_window = strategy, timeout, join_window
        self._hosted[round_id] = hosted
        self.runs[round_id] = record
        _bound(self.runs, MAX_RUNS)
        _bound(self._hosted, MAX_RUNS)
        required = requirements(spec.task, dict(self.config.tasks[spec.task])) | dict(spec.requirements)
        await self.messenger.publish(RoundAnnounce(
            round_id, spec.task, spec.task, spec.strategy, spec.rounds, spec.min_clients, timeout, hosted.join_until,
            required))
        return hosted

    async def _drive(self, hosted: _Hosted, spec: RoundSpec, on_round: Callable[[RoundMetrics], None] | None) -> None:
        try:
            await self._rounds(hosted, spec, on_round)
        except Exception as exc:  # noqa: BLE001 - Flower's strategy code may raise anything; the run ends, not the node
            self.messenger.counters.add("fl", "runs_crashed")
            hosted.record.state, hosted.record.detail = "failed", f"{type(exc).__name__}: {exc}"[:300]
            log.exception("hosted run %s failed", hosted.record.round_id)

    async def _rounds(self, hosted: _Hosted, spec: RoundSpec, on_round: Callable[[RoundMetrics], None] | None) -> None:
        record, grid = hosted.record, hosted.grid
        await trio.sleep(hosted.join_window)
        hosted.open = False
        joined = list(grid.get_node_ids())
        if len(joined) < spec.min_clients:
            record.state, record.detail = "failed", f"{len(joined)} joined, {spec.min_clients} needed"
            return
        record.state = "running"
        arrays = hosted.initial if hosted.initial is not None else TASKS[spec.task].initial_model(
            dict(self.config.tasks[spec.task]), round_config(spec.strategy)["method"])
        for number in range(1, spec.rounds + 1):
            started = self.clock()
            arrays, metrics = await self._one_round(hosted.strategy, grid, number, arrays, spec, hosted.timeout)
            metrics.seconds = round(self.clock() - started, 3)
            if hosted.evaluate is not None:
                metrics.central = hosted.evaluate(arrays)
            self.models[record.round_id] = arrays
            _bound(self.models, MAX_MODELS)
            record.history.append(metrics)
            if on_round is not None:
                on_round(metrics)
        record.state = "done"

    async def _one_round(self, strategy, grid: SwarmGrid, number: int, arrays, spec: RoundSpec, timeout: float):
        """One train + evaluate round, as ``Strategy.start`` does it."""
        config = round_config(spec.strategy, spec.train_config)
        minimum = getattr(strategy, "min_train_nodes", 1)
        train_replies = await grid.send_and_receive_async(
            list(strategy.configure_train(number, arrays, ConfigRecord(dict(config)), grid)), timeout)
        weight_key = getattr(strategy, "weighted_by_key", "num-examples")
        rejected: dict[str, str] = {}
        valid = []
        for reply in (m for m in train_replies if not m.has_error()):
            reason = check_train_reply(reply, arrays, arrays_key=getattr(strategy, "arrayrecord_key", "arrays"),
                                       weight_key=weight_key, max_weight=self.config.max_examples)
            if reason is None:
                valid.append(reply)
            else:
                rejected[str(grid.peer_of(reply.metadata.src_node_id))] = reason
        self.messenger.counters.add("fl", "replies_rejected", len(rejected))
        failures = len(train_replies) - len(valid) - len(rejected)
        if len(valid) < minimum:
            return arrays, RoundMetrics(number, f"failed: {len(valid)} valid replies, {minimum} needed", len(valid),
                                        failures, {}, {}, {}, rejected=rejected)
        capped = self._cap_weights(grid, valid, weight_key)
        clients_train = {}
        for reply in valid:
            peer = grid.peer_of(reply.metadata.src_node_id)
            if peer is not None and "metrics" in reply.content.metric_records:
                clients_train[str(peer)] = _floats(reply.content["metrics"])
        new_arrays, train_metrics = strategy.aggregate_train(number, valid)
        if new_arrays is not None:
            arrays = new_arrays
        evaluate_replies = []
        for reply in await grid.send_and_receive_async(
                list(strategy.configure_evaluate(number, arrays, ConfigRecord(dict(config)), grid)), timeout):
            reason = None if reply.has_error() else check_metrics(reply, max_weight=self.config.max_examples)
            if reason is None:
                evaluate_replies.append(reply)
            else:
                rejected.setdefault(str(grid.peer_of(reply.metadata.src_node_id)), f"evaluate: {reason}")
                self.messenger.counters.add("fl", "replies_rejected")
        evaluate_metrics = strategy.aggregate_evaluate(number, evaluate_replies)
        clients = {}
        for reply in evaluate_replies:
            peer = grid.peer_of(reply.metadata.src_node_id)
            if not reply.has_error() and peer is not None and "metrics" in reply.content.metric_records:
                clients[str(peer)] = _floats(reply.content["metrics"])
        return arrays, RoundMetrics(number, "ok", len(valid), failures,
                                    _floats(train_metrics), _floats(evaluate_metrics), clients,
                                    clients_train=clients_train, rejected=rejected, capped=capped)

    def _cap_weights(self, grid: SwarmGrid, replies: list[Message], key: str) -> dict[str, float]:
        """Cut each reply's weight to ``weight_cap`` times the median of the others' (in place).

        The absolute bound alone lets one client claim 1e6 examples beside honest hundreds;
        against its peers' median it can claim at most ``weight_cap`` times a typical share.
        """
        weights = [float(m.content["metrics"][key]) for m in replies]
        capped = {}
        for i, reply in enumerate(replies):
            others = weights[:i] + weights[i + 1:]
            if not others:
                break
            cap = self.config.weight_cap * float(np.median(others))
            if weights[i] > cap:
                metrics = reply.content["metrics"]
                metrics[key] = type(metrics[key])(cap)
                capped[str(grid.peer_of(reply.metadata.src_node_id))] = weights[i]
        self.messenger.counters.add("fl", "weights_capped", len(capped))
        return capped

    async def _on_join(self, peer: PeerId, join: Join) -> JoinReply:
        hosted = self._hosted.get(join.round_id)
        if hosted is None:
            return JoinReply(False, 0, "no such run here")
        if not hosted.open or self.clock() > hosted.join_until:
            return JoinReply(False, 0, "joining has closed")
        if join.task != hosted.task:
            return JoinReply(False, 0, "wrong task")
        node_id = hosted.grid.add_peer(peer)
        hosted.record.participants = sorted({*hosted.record.participants, str(peer)})
        return JoinReply(True, node_id)

    async def _on_result(self, peer: PeerId, result: Result) -> Ack:
        hosted = self._hosted.get(result.round_id)
        if hosted is None or hosted.grid.peer_of(flower_node_id(peer)) != peer:
            return Ack(False, "not a participant of that run")
        if (result.inline is None) == (result.blob is None):
            return Ack(False, "a result carries either inline bytes or a blob")
        try:
            data = result.inline if result.blob is None else await self._fetch(peer, result.blob)
            reason = hosted.grid.deliver(peer, flower_wire.decode(data))
        except (BlobError, flower_wire.WireError) as exc:
            reason = str(exc)
        return Ack(not reason, reason[:200])

    # ---- payloads --------------------------------------------------------------------
    async def _send(self, peer: PeerId, kind: type[Task] | type[Result], round_id: str, data: bytes) -> None:
        """Send a Flower message inline or as a blob offered to ``peer``; raise if refused."""
        if len(data) > self._max_payload:
            raise ValueError(f"message of {len(data)} bytes is over the {self._max_payload}-byte limit")
        body = kind(round_id, inline=data) if len(data) <= INLINE_BYTES else kind(round_id, blob=self.shelf.offer(data, peer))
        ack = await self.messenger.request(peer, body, Ack, timeout=self.config.chunk_timeout)
        if not ack.accepted:
            raise RequestRefused(f"{kind.KIND} refused: {ack.reason}")

    async def _fetch(self, peer: PeerId, ref: BlobRef) -> bytes:
        return await fetch(self.messenger, peer, ref, max_bytes=self._max_payload, timeout=self.config.chunk_timeout)

def _call(app, message: Message, context: Context) -> Message:
    """Run the ClientApp; a crash in it becomes an error reply, as Flower's runtime does."""
    try:
        return app(message, context)
    except Exception as exc:  # the app's failure is reported to the host, never kills the node
        return Message(Error(code=CLIENT_APP_FAILED, reason=f"{type(exc).__name__}: {exc}"[:500]), reply_to=message)


def _bound(table: dict, size: int) -> None:
    """Drop the oldest entries of an insertion-ordered dict beyond ``size``."""
    while len(table) > size:
        table.pop(next(iter(table)))


def _run_id(round_id: str) -> int:
    return int.from_bytes(hashlib.sha256(round_id.encode()).digest()[:8], "big") >> 1


def _floats(record: MetricRecord | None) -> dict[str, float]:
    if record is None:
        return {}
    return {k: float(v) for k, v in record.items() if isinstance(v, int | float)}
