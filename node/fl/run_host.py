"""The host side of federated runs: announce, admit joiners, drive the rounds.

Hosting gossips a signed ``RunAnnounce``, accepts ``Join`` requests for the join window
(or until ``max_clients`` have joined, the run's or the config's: the run then starts at
once and refuses more), then drives a Flower strategy round by round over a ``SwarmGrid``:
``configure_train``, the replies, ``aggregate_train``, then the same for evaluate (the
order of Flower's ``Strategy.start``, awaiting the network instead of blocking a thread on
it). Every reply is checked against the round's model before the strategy sees it
(``learning.reply_check``: only the task's records, names, shapes, dtypes, finite values, a
bounded weight); those that fail are dropped and recorded per round, and a result declared
larger than the round's reply limit (a few times the model sent) is refused before a byte
of it is fetched. A participant that takes a round's instruction and misses its deadline is
dropped from the rounds after it, so a silent joiner costs one timeout, not one per round.
A round with fewer valid replies than the minimum keeps the previous model and is marked
failed; a run ends ``done`` only if every round succeeded, ``degraded`` if some failed,
``failed`` if none did or its strategy raised (the node carries on).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import trio
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp.strategy import Strategy

from edgeswarm.learning.keys import ARRAYS, METRICS, NUM_EXAMPLES
from edgeswarm.learning.reply_check import check_metrics, check_train_reply, unexpected_records
from edgeswarm.node.config import FederationConfig
from edgeswarm.node.fl.catalog import TASKS, check_run, make_strategy, requirements, round_config
from edgeswarm.node.fl.payloads import Payloads
from edgeswarm.node.fl.run_records import MAX_RUNS, RoundMetrics, RunBook, RunRecord, RunSpec, bound, floats
from edgeswarm.protocols.blobs import BlobError
from edgeswarm.protocols.fl import flower_wire
from edgeswarm.protocols.fl.grid import REFUSED, SwarmGrid, flower_node_id
from edgeswarm.protocols.fl.messages import Ack, Join, JoinReply, Result, RunAnnounce, Task
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.peer_id import PeerId

log = logging.getLogger(__name__)

MAX_MODELS = 8  # latest aggregated models kept, one per hosted run
REPLY_FACTOR = 3  # a result may declare this many times the largest instruction of its round ...
REPLY_SLACK = 1 << 20  # ... plus this (metrics; the model, FED-PUB's embedding or OFA's mask fit well within)

Evaluate = Callable[[ArrayRecord], dict[str, float]]
OnRound = Callable[[RoundMetrics], None]


@dataclass
class HostedRun:
    """A run this node hosts: what is fixed about it, and its progress (``record``)."""

    record: RunRecord
    spec: RunSpec
    grid: SwarmGrid
    strategy: Strategy
    join_window: float
    join_until: float  # on the node's clock
    reply_timeout: float
    initial: ArrayRecord | None = None
    evaluate: Evaluate | None = None
    on_round: OnRound | None = None
    max_clients: int = 64
    full: trio.Event = field(default_factory=trio.Event)
    """Set once ``max_clients`` have joined: joining closes early."""
    reply_limit: int = 0
    """Bytes a result may declare this round (set as each round's instructions go out)."""


class FlHost:
    """Host runs over the swarm (see the module docstring)."""

    def __init__(
        self,
        messenger: Messenger,
        config: FederationConfig,
        rng: random.Random,
        clock: Callable[[], float],
        payloads: Payloads,
        runs: RunBook,
    ) -> None:
        self.messenger = messenger
        self.config = config
        self.rng = rng
        self.clock = clock
        self.payloads = payloads
        self.runs = runs
        self.models: dict[str, ArrayRecord] = {}  # the latest aggregated model of each run hosted here
        self._hosted: dict[str, HostedRun] = {}
        self._counter = 0

    @property
    def me(self) -> PeerId:
        return self.messenger.local_peer

    async def announce(
        self,
        spec: RunSpec,
        *,
        initial: ArrayRecord | None = None,
        evaluate: Evaluate | None = None,
        on_round: OnRound | None = None,
    ) -> HostedRun:
        """Check ``spec``, open the run for joins and gossip its announcement."""
        if spec.task not in TASKS:
            raise ValueError(f"unknown task {spec.task!r} (known: {', '.join(TASKS)})")
        if spec.task not in self.config.tasks:
            raise ValueError(f"the host must offer task {spec.task!r} too (it builds the initial model from it)")
        if spec.rounds < 1 or spec.min_clients < 1:
            raise ValueError("rounds and min_clients must be at least 1")
        max_clients = min(spec.max_clients or self.config.max_clients, self.config.max_clients)
        if max_clients < spec.min_clients:
            raise ValueError(f"max_clients ({max_clients}) is below min_clients ({spec.min_clients})")
        problem = check_run(spec.task, spec.strategy, spec.min_clients)
        if problem:
            raise ValueError(problem)
        strategy = make_strategy(spec.strategy, spec.min_clients, spec.strategy_options)
        self._counter += 1
        run_id = f"{str(self.me)[-8:]}-{self._counter}-{self.rng.getrandbits(32):08x}"
        grid = SwarmGrid(
            flower_wire.flower_id(run_id),
            flower_node_id(self.me),
            lambda peer, data: self.payloads.send(peer, Task, run_id, data),
        )
        join_window = spec.join_window or self.config.join_window
        record = RunRecord(run_id, "host", spec.task, spec.strategy, spec.rounds, str(self.me), "announced")
        hosted = HostedRun(
            record,
            spec,
            grid,
            strategy,
            join_window,
            self.clock() + join_window,
            spec.reply_timeout or self.config.reply_timeout,
            initial,
            evaluate,
            on_round,
            max_clients,
        )
        self._hosted[run_id] = hosted
        self.runs.add(record)
        bound(self._hosted, MAX_RUNS)
        required = requirements(spec.task, dict(self.config.tasks[spec.task])) | dict(spec.requirements)
        await self.messenger.publish(
            RunAnnounce(
                run_id,
                spec.task,
                spec.strategy,
                spec.rounds,
                spec.min_clients,
                hosted.reply_timeout,
                hosted.join_until,
                required,
            )
        )
        return hosted

    async def drive(self, hosted: HostedRun) -> None:
        """Run every round of ``hosted``; a strategy that raises fails the run, not the node."""
        try:
            await self._rounds(hosted)
        except Exception as exc:  # Flower's strategy code may raise anything; the run ends, not the node
            self.messenger.counters.add("fl", "runs_crashed")
            hosted.record.state, hosted.record.detail = "failed", f"{type(exc).__name__}: {exc}"[:300]
            log.exception("hosted run %s failed", hosted.record.run_id)
        finally:
            self.runs.save(hosted.record)  # done, failed, or cancelled with the node (then: interrupted)

    async def _rounds(self, hosted: HostedRun) -> None:
        record, grid, spec = hosted.record, hosted.grid, hosted.spec
        with trio.move_on_after(hosted.join_window):
            await hosted.full.wait()
        joined = list(grid.get_node_ids())
        if len(joined) < spec.min_clients:
            record.state, record.detail = "failed", f"{len(joined)} joined, {spec.min_clients} needed"
            return
        record.state = "running"  # closes joining
        self.runs.save(record)
        arrays = (
            hosted.initial
            if hosted.initial is not None
            else TASKS[spec.task].initial_model(
                dict(self.config.tasks[spec.task]), str(round_config(spec.strategy)["method"])
            )
        )
        needed = _min_available(hosted.strategy)
        for number in range(1, spec.rounds + 1):
            left = len(list(grid.get_node_ids()))
            if left < needed:  # none joins once the run started: no later round can work either
                record.detail = f"{left} participants left, {needed} needed"
                break
            started = self.clock()
            arrays, metrics = await self._one_round(hosted, number, arrays)
            metrics.seconds = round(self.clock() - started, 3)
            if hosted.evaluate is not None:
                metrics.central = hosted.evaluate(arrays)
            self.models[record.run_id] = arrays
            bound(self.models, MAX_MODELS)
            record.history.append(metrics)
            self.runs.save(record)
            if hosted.on_round is not None:
                hosted.on_round(metrics)
        ok = sum(m.status == "ok" for m in record.history)
        why = record.detail or (record.history[-1].status if record.history else "")
        if ok == spec.rounds:
            record.state = "done"
        elif ok:
            record.state, record.detail = (
                "degraded",
                f"{spec.rounds - ok} of {spec.rounds} rounds failed or not run ({why})",
            )
        else:
            record.state, record.detail = "failed", f"no round succeeded ({why})"

    async def _one_round(self, hosted: HostedRun, number: int, arrays: ArrayRecord) -> tuple[ArrayRecord, RoundMetrics]:
        """One train + evaluate round, in the order of ``Strategy.start``."""
        strategy, grid, spec = hosted.strategy, hosted.grid, hosted.spec
        config = round_config(spec.strategy, spec.train_config)
        minimum = getattr(strategy, "min_train_nodes", 1)
        dropped: dict[str, str] = {}
        train_replies = await self._exchange(
            hosted, strategy.configure_train(number, arrays, ConfigRecord(dict(config)), grid), dropped
        )
        weight_key = getattr(strategy, "weighted_by_key", NUM_EXAMPLES)
        rejected = _refused(grid, train_replies)
        valid = []
        for reply in (m for m in train_replies if not m.has_error()):
            reason = check_train_reply(
                reply,
                arrays,
                arrays_key=getattr(strategy, "arrayrecord_key", ARRAYS),
                side_records=TASKS[spec.task].side_records,
                weight_key=weight_key,
                max_weight=self.config.max_examples,
            )
            if reason is None:
                valid.append(reply)
            else:
                rejected[str(grid.peer_of(reply.metadata.src_node_id))] = reason
        self.messenger.counters.add("fl", "replies_rejected", len(rejected))
        failures = len(train_replies) - len(valid) - len(rejected)
        if len(valid) < minimum:
            return arrays, RoundMetrics(
                number,
                f"failed: {len(valid)} valid replies, {minimum} needed",
                len(valid),
                failures,
                {},
                {},
                {},
                rejected=rejected,
                dropped=dropped,
            )
        capped = self._cap_weights(grid, valid, weight_key)
        clients_train = self._by_peer(grid, valid)
        new_arrays, train_metrics = strategy.aggregate_train(number, valid)
        if new_arrays is not None:
            arrays = new_arrays
        evaluate_replies = []
        # Flower's sampling waits, sleeping, until enough nodes are there: with fewer left (some
        # were dropped this round), ask none rather than block the node
        evaluating = len(list(grid.get_node_ids())) >= _min_available(strategy)
        instructions = (
            strategy.configure_evaluate(number, arrays, ConfigRecord(dict(config)), grid) if evaluating else []
        )
        answers = await self._exchange(hosted, instructions, dropped)
        for peer, reason in _refused(grid, answers).items():
            rejected.setdefault(peer, f"evaluate: {reason}")
            self.messenger.counters.add("fl", "replies_rejected")
        for reply in answers:
            reason = (
                None
                if reply.has_error()
                else unexpected_records(reply) or check_metrics(reply, max_weight=self.config.max_examples)
            )
            if reason is None:
                evaluate_replies.append(reply)
            else:
                rejected.setdefault(str(grid.peer_of(reply.metadata.src_node_id)), f"evaluate: {reason}")
                self.messenger.counters.add("fl", "replies_rejected")
        evaluate_metrics = strategy.aggregate_evaluate(number, evaluate_replies)
        clients = self._by_peer(grid, [r for r in evaluate_replies if not r.has_error()])
        return arrays, RoundMetrics(
            number,
            "ok",
            len(valid),
            failures,
            floats(train_metrics),
            floats(evaluate_metrics),
            clients,
            clients_train=clients_train,
            rejected=rejected,
            capped=capped,
            dropped=dropped,
        )

    async def _exchange(
        self, hosted: HostedRun, instructions: Iterable[Message], dropped: dict[str, str]
    ) -> list[Message]:
        """Send a round's instructions; what is not back within the reply timeout is missed,
        and whoever missed it is dropped from the run (``dropped``)."""
        exchange = hosted.grid.exchange(instructions)
        hosted.reply_limit = REPLY_FACTOR * max(map(len, exchange.encoded), default=0) + REPLY_SLACK
        with trio.move_on_after(hosted.reply_timeout):
            await exchange.run()
        self.payloads.release(hosted.record.run_id)  # what a participant did not fetch by now, it never will
        for node_id in exchange.missed():
            peer = hosted.grid.drop_peer(node_id)
            if peer is not None:
                dropped[str(peer)] = f"missed the reply deadline ({hosted.reply_timeout:g} s)"
                self.messenger.counters.add("fl", "participants_dropped")
        return exchange.replies()

    @staticmethod
    def _by_peer(grid: SwarmGrid, replies: list[Message]) -> dict[str, dict[str, float]]:
        """Each participant's reply metrics, by PeerID."""
        out = {}
        for reply in replies:
            peer = grid.peer_of(reply.metadata.src_node_id)
            if peer is not None and METRICS in reply.content.metric_records:
                out[str(peer)] = floats(reply.content.metric_records[METRICS])
        return out

    def _cap_weights(self, grid: SwarmGrid, replies: list[Message], key: str) -> dict[str, float]:
        """Cut each reply's weight to ``weight_cap`` times the median of the others' (in place).

        The absolute bound alone lets one client claim 1e6 examples beside honest hundreds;
        against its peers' median it can claim at most ``weight_cap`` times a typical share.
        """
        weights = [_scalar(m.content.metric_records[METRICS][key]) for m in replies]
        capped = {}
        for i, reply in enumerate(replies):
            others = weights[:i] + weights[i + 1 :]
            if not others:
                break
            cap = self.config.weight_cap * float(np.median(others))
            if weights[i] > cap:
                metrics = reply.content.metric_records[METRICS]
                metrics[key] = int(cap) if isinstance(metrics[key], int) else cap
                capped[str(grid.peer_of(reply.metadata.src_node_id))] = weights[i]
        self.messenger.counters.add("fl", "weights_capped", len(capped))
        return capped

    async def on_join(self, peer: PeerId, join: Join) -> JoinReply:
        hosted = self._hosted.get(join.run_id)
        if hosted is None:
            return JoinReply(False, 0, "no such run here")
        if hosted.record.state != "announced" or self.clock() > hosted.join_until:
            return JoinReply(False, 0, "joining has closed")
        if join.task != hosted.spec.task:
            return JoinReply(False, 0, "wrong task")
        if hosted.full.is_set() and str(peer) not in hosted.record.participants:
            return JoinReply(False, 0, f"the run is full ({hosted.max_clients} clients)")
        node_id = hosted.grid.add_peer(peer)
        hosted.record.participants = sorted({*hosted.record.participants, str(peer)})
        self.runs.save(hosted.record)
        if len(hosted.record.participants) >= hosted.max_clients:
            hosted.full.set()
        return JoinReply(True, node_id)

    async def on_result(self, peer: PeerId, result: Result) -> Ack:
        hosted = self._hosted.get(result.run_id)
        if hosted is None or hosted.grid.peer_of(flower_node_id(peer)) != peer:
            return Ack(False, "not a participant of that run")
        declared = result.blob.size if result.blob is not None else len(result.inline or b"")
        if hosted.reply_limit and declared > hosted.reply_limit:  # refused before a byte is fetched
            reason = f"a result of {declared} bytes is over this round's limit of {hosted.reply_limit}"
            hosted.grid.refuse(peer, reason)
            return Ack(False, reason)
        try:
            reason = hosted.grid.deliver(peer, flower_wire.decode(await self.payloads.receive(peer, result)))
        except (BlobError, flower_wire.WireError, ValueError) as exc:
            reason = str(exc)
            hosted.grid.refuse(peer, reason)  # the round takes it as a rejection now, not a missed deadline
        return Ack(not reason, reason[:200])


def _min_available(strategy: Strategy) -> int:
    """The participants a strategy's sampling waits for (Flower's sample_nodes sleeps, in a
    loop, until that many are there: never call configure_* with fewer)."""
    inner = getattr(strategy, "strategy", strategy)  # DP wrappers hold the strategy that samples
    return max(getattr(s, "min_available_nodes", 1) for s in (strategy, inner))


def _refused(grid: SwarmGrid, replies: list[Message]) -> dict[str, str]:
    """The replies the host refused before reading them (``SwarmGrid.refuse``): peer -> why."""
    return {
        str(grid.peer_of(reply.metadata.src_node_id)): reply.error.reason or "refused"
        for reply in replies
        if reply.has_error() and reply.error.code == REFUSED
    }


def _scalar(value: object) -> float:
    """A metric that ``check_metrics`` let through as a number (never a list)."""
    if not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)
