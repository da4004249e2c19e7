"""The federation service of a node: host Flower runs over the swarm, or join them.

One service, three parts: ``run_host`` (announce, admit, drive the rounds), ``run_client``
(join, answer tasks) and ``payloads`` (Flower messages inline or as blobs). This module
wires them onto the node's messenger and keeps the run records ``fl status`` shows
(``run_records``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import trio
from flwr.app import ArrayRecord

from edgeswarm.node import logs
from edgeswarm.node.compute import Compute
from edgeswarm.node.config import FederationConfig
from edgeswarm.node.fl.catalog import TASKS
from edgeswarm.node.fl.payloads import Payloads
from edgeswarm.node.fl.run_client import FederationHooks, FlClient
from edgeswarm.node.fl.run_host import Evaluate, FlHost, OnRound
from edgeswarm.node.fl.run_records import RoundMetrics, RunBook, RunRecord, RunSpec
from edgeswarm.node.store import Store
from edgeswarm.protocols.blobs import BlobShelf
from edgeswarm.protocols.fl import flower_wire
from edgeswarm.protocols.fl.messages import MESSAGES, Join, Result, RunAnnounce, Task
from edgeswarm.protocols.messenger import Messenger

__all__ = ["Federation", "FederationHooks", "RoundMetrics", "RunRecord", "RunSpec"]


class Federation:
    """Host and join federated runs (see the module docstring).

    Parameters
    ----------
    messenger, config, rng, clock, compute, shelf
        The node's (``clock`` is its wall or virtual clock, ``compute`` runs ClientApps).
    hooks : FederationHooks or None (default: None)
        What the simulator changes: attackers' ClientApps, gateways' async apps,
        satellites' join policies.
    store : Store or None (default: None)
        Where run records are kept across restarts (None: in memory only).
    """

    def __init__(
        self,
        messenger: Messenger,
        config: FederationConfig,
        rng: random.Random,
        clock: Callable[[], float],
        compute: Compute,
        shelf: BlobShelf,
        hooks: FederationHooks | None = None,
        store: Store | None = None,
    ) -> None:
        for task in config.tasks:
            if task not in TASKS:
                raise ValueError(f"[node.federation.tasks] offers unknown task {task!r} (known: {', '.join(TASKS)})")
        flower_wire.ensure_task_identity()
        logs.adopt_flower()
        self.config = config
        self.runs = RunBook(store)
        payloads = Payloads(
            messenger, shelf, max_bytes=int(config.max_payload_mb * 1024 * 1024), timeout=config.chunk_timeout
        )
        self._host = FlHost(messenger, config, rng, clock, payloads, self.runs)
        self._client = FlClient(messenger, config, compute, payloads, self.runs, hooks or FederationHooks())
        self._nursery: trio.Nursery | None = None
        messenger.register(*MESSAGES)
        messenger.on_request(Join, self._host.on_join)
        messenger.on_request(Result, self._host.on_result)
        messenger.on_request(Task, self._client.on_task)

    @property
    def models(self) -> dict[str, ArrayRecord]:
        """The latest aggregated model of each run this node hosts (the last few runs)."""
        return self._host.models

    @property
    def announced(self) -> dict:
        """Runs heard of: run id -> (host, announcement)."""
        return self._client.announced

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hear announcements until cancelled; hosted runs and client tasks run inside."""
        async with trio.open_nursery() as nursery:
            self._nursery = self._client.nursery = nursery
            subscription = self._client.messenger.subscribe(RunAnnounce)
            task_status.started()
            async for opened in subscription:
                self._client.on_announce(opened.sender, opened.body)

    async def host(
        self,
        spec: RunSpec,
        *,
        on_round: OnRound | None = None,
        initial: ArrayRecord | None = None,
        evaluate: Evaluate | None = None,
    ) -> RunRecord:
        """Announce, gather joins, run ``spec.rounds`` rounds; returns the run's record.

        ``initial`` replaces the task's starting model; ``evaluate`` scores each round's
        aggregated model on the host (Flower's centralised evaluation). The final model is
        ``self.models[run_id]``.
        """
        hosted = await self._host.announce(spec, initial=initial, evaluate=evaluate, on_round=on_round)
        await self._host.drive(hosted)
        return hosted.record

    async def start_host(self, spec: RunSpec) -> str:
        """Announce a run and drive it in the background (``fl host``); returns its run id."""
        if self._nursery is None:
            raise ValueError("the federation service is not running")
        hosted = await self._host.announce(spec)
        self._nursery.start_soon(self._host.drive, hosted)
        return hosted.record.run_id

    async def join(self, run_id: str) -> RunRecord:
        """Join an announced run whose task this node offers; raises ValueError if refused."""
        return await self._client.join(run_id)
