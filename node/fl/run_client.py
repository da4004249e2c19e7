"""The client side of federated runs: hear announcements, join, answer each task.

Offered tasks (``[node.federation.tasks]``) are joined on announcement when ``auto_join``
is set (or by ``join``). Each ``Task`` is acknowledged at once, run through the task's
``ClientApp`` on ``Compute`` (or an async app, see ``FederationHooks``), and answered with
a ``Result``. A failing task loses only itself: it is counted, the node carries on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio
from flwr.app import Context, Error, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp

from edgeswarm.node.compute import Compute
from edgeswarm.node.config import FederationConfig
from edgeswarm.node.fl.catalog import TASKS, meets
from edgeswarm.node.fl.payloads import Payloads
from edgeswarm.node.fl.run_records import RoundMetrics, RunBook, RunRecord, bound, floats
from edgeswarm.protocols.blobs import BlobError
from edgeswarm.protocols.envelope import Rejected
from edgeswarm.protocols.fl import flower_wire
from edgeswarm.protocols.fl.messages import Ack, Join, JoinReply, Result, RunAnnounce, Task
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import NetworkError, deadline
from edgeswarm.protocols.peer_id import PeerId

CLIENT_APP_FAILED = 3  # Error code of a reply whose ClientApp raised
MAX_CLIENT_HISTORY = 1000  # rounds of our own metrics a client record keeps per run
MAX_ANNOUNCED = 1000  # announced runs remembered
MAX_JOINED = 64  # joined runs whose client state is kept (oldest dropped first)

AsyncApp = Callable[[Message, Context], Awaitable[Message]]
JoinPolicy = Callable[[RunAnnounce], dict[str, Any] | None]


@dataclass(frozen=True)
class FederationHooks:
    """What a deployment (the simulator) changes in how this node answers runs.

    Parameters
    ----------
    client_apps : task -> ClientApp (default: none)
        Replace a task's ClientApp (the simulator's attackers).
    async_apps : task -> async (message, context) -> reply (default: none)
        Tasks answered by async code on this node instead of a ClientApp (a gateway's
        reply to the cloud is a regional run of its own).
    join_policy : (announce) -> node config or None (default: None)
        Decides whether to join an offered run and adds per-run node config (a
        satellite's association share and energy factor); None joins every matching run.
    """

    client_apps: Mapping[str, ClientApp] = field(default_factory=dict)
    async_apps: Mapping[str, AsyncApp] = field(default_factory=dict)
    join_policy: JoinPolicy | None = None


@dataclass(frozen=True)
class JoinedRun:
    """A run this node takes part in: its record, its host and Flower's per-run state."""

    record: RunRecord
    host: PeerId
    context: Context
    task: str


class FlClient:
    """Join runs and answer their tasks (see the module docstring)."""

    def __init__(
        self,
        messenger: Messenger,
        config: FederationConfig,
        compute: Compute,
        payloads: Payloads,
        runs: RunBook,
        hooks: FederationHooks,
    ) -> None:
        self.messenger = messenger
        self.config = config
        self.compute = compute
        self.payloads = payloads
        self.runs = runs
        self.hooks = hooks
        self.client_apps = {name: task.client_app for name, task in TASKS.items()} | dict(hooks.client_apps)
        self.announced: dict[str, tuple[PeerId, RunAnnounce]] = {}
        self._joined: dict[str, JoinedRun] = {}
        self._joining: dict[str, trio.Event] = {}  # runs whose join request is in flight
        self.nursery: trio.Nursery | None = None
        """Where task work runs: the federation service's nursery, set when it runs."""

    def on_announce(self, host: PeerId, announce: RunAnnounce) -> None:
        if host == self.messenger.local_peer or announce.run_id in self.announced:
            return
        self.announced[announce.run_id] = (host, announce)
        bound(self.announced, MAX_ANNOUNCED)  # forget the oldest: a flood cannot grow memory
        offered = self.config.tasks.get(announce.task)
        policy = self.hooks.join_policy
        if (
            self.config.auto_join
            and offered is not None
            and meets(announce.requirements, announce.task, offered)
            and self.nursery is not None
            and (policy is None or policy(announce) is not None)
        ):
            self.nursery.start_soon(self._join_quietly, announce.run_id)

    async def _join_quietly(self, run_id: str) -> None:
        try:
            await self.join(run_id)
        except (NetworkError, ValueError):
            self.messenger.counters.add("fl", "joins_failed")  # the host is gone or full: not joined

    async def join(self, run_id: str) -> RunRecord:
        """Join an announced run whose task this node offers; raises ValueError if refused."""
        if run_id in self._joined:
            return self._joined[run_id].record
        if run_id not in self.announced:
            raise ValueError(f"no announced run {run_id!r}")
        host, announce = self.announced[run_id]
        if announce.task not in self.config.tasks:
            raise ValueError(f"this node does not offer task {announce.task!r}")
        if not meets(announce.requirements, announce.task, self.config.tasks[announce.task]):
            raise ValueError(f"this node's {announce.task!r} config does not match the run's {announce.requirements}")
        if run_id in self._joining:
            raise ValueError(f"already joining run {run_id!r}")
        self._joining[run_id] = settled = trio.Event()
        try:
            return await self._join(run_id, host, announce)
        finally:
            del self._joining[run_id]
            settled.set()

    async def _join(self, run_id: str, host: PeerId, announce: RunAnnounce) -> RunRecord:
        with deadline(self.config.chunk_timeout):
            reply = await self.messenger.request(host, Join(run_id, announce.task), JoinReply)
        if not reply.accepted:
            raise ValueError(f"host refused: {reply.reason}")
        node_config = dict(self.config.tasks[announce.task])
        if self.hooks.join_policy is not None:
            extra = self.hooks.join_policy(announce)
            if extra is None:
                raise ValueError("this node's join policy declines the run")
            node_config |= extra
        context = Context(
            run_id=flower_wire.flower_id(run_id),
            node_id=reply.node_id,
            node_config=node_config,
            state=RecordDict(),
            run_config={},
        )
        record = RunRecord(run_id, "client", announce.task, announce.strategy, announce.rounds, str(host), "joined")
        self._joined[run_id] = JoinedRun(record, host, context, announce.task)
        self.runs.add(record)
        bound(self._joined, MAX_JOINED)  # a client's state per run (masks, optimizer) is not kept forever
        return record

    async def on_task(self, peer: PeerId, task: Task) -> Ack:
        joining = self._joining.get(task.run_id)
        if joining is not None:  # the host started the run at our join: its task overtook its reply
            with trio.move_on_after(self.config.chunk_timeout):
                await joining.wait()
        joined = self._joined.get(task.run_id)
        if joined is None or joined.host != peer:
            return Ack(False, "not a participant of that run with that host")
        if (task.inline is None) == (task.blob is None):
            return Ack(False, "a task carries either inline bytes or a blob")
        assert self.nursery is not None
        self.nursery.start_soon(self._work, joined, task)
        return Ack(True)

    async def _work(self, joined: JoinedRun, task: Task) -> None:
        """Fetch, decode, run the ClientApp, reply; any failure only loses this one task."""
        try:
            message = flower_wire.decode(await self.payloads.receive(joined.host, task))
            if message.metadata.dst_node_id != joined.context.node_id:
                self.messenger.counters.add("fl", "tasks_failed")
                return
            joined.record.state = "training"
            if joined.task in self.hooks.async_apps:
                reply = await self.hooks.async_apps[joined.task](message, joined.context)
            else:
                app = self.client_apps[joined.task]
                reply = await self.compute.run(
                    lambda: _call(app, message, joined.context), reference_seconds=TASKS[joined.task].reference_seconds
                )
            flower_wire.stamp(
                reply,
                run_id=joined.context.run_id,
                message_id=f"r-{message.metadata.message_id}",
                src_node_id=joined.context.node_id,
            )
            self._remember(joined.record, message, reply)  # before the host can see the reply and end the run
            await self.payloads.send(joined.host, Result, task.run_id, flower_wire.encode(reply))
        except (BlobError, flower_wire.WireError, NetworkError, Rejected, ValueError):
            self.messenger.counters.add("fl", "tasks_failed")
        finally:
            if joined.record.state == "training":
                joined.record.state = "joined"
            self.runs.save(joined.record)

    def _remember(self, record: RunRecord, task: Message, reply: Message) -> None:
        """Our own metrics for the task's round in our record; the last round's evaluation ends the run."""
        number = _round_of(task)
        if number is None or not 1 <= number <= record.rounds or reply.has_error():
            return  # the host names the round: only the announced ones are kept
        entry = next((r for r in record.history if r.round == number), None)
        if entry is None:
            entry = RoundMetrics(number, "ok", replies=1, failures=0, train={}, evaluate={}, clients={})
            record.history.append(entry)
            record.history.sort(key=lambda r: r.round)
            del record.history[:-MAX_CLIENT_HISTORY]  # a long run keeps its latest rounds
        metrics = {k: v for m in reply.content.metric_records.values() for k, v in floats(m).items()}
        if task.metadata.message_type == MessageType.EVALUATE:
            entry.evaluate = metrics
            entry.clients = {str(self.messenger.local_peer): metrics}  # as the host's table shows each client
            if number >= record.rounds:
                record.state = "done"
        else:
            entry.train = metrics


def _round_of(message: Message) -> int | None:
    """The server round a task belongs to: Flower strategies put it in the config (and the group id)."""
    for config in message.content.config_records.values():
        value = config.get("server-round")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    group = message.metadata.group_id
    return int(group) if group.isdigit() else None


def _call(app: ClientApp, message: Message, context: Context) -> Message:
    """Run the ClientApp; a crash in it becomes an error reply, as Flower's runtime does."""
    try:
        return app(message, context)
    except Exception as exc:  # noqa: BLE001 - any failure of the app is reported to the host, never kills the node
        return Message(Error(code=CLIENT_APP_FAILED, reason=f"{type(exc).__name__}: {exc}"[:500]), reply_to=message)
