"""A node inside an asyncio program, in the same process: trio's guest mode.

Many edge applications are asyncio. ``EmbeddedNode`` runs the same daemon as ``edgeswarm
node run`` (libp2p, services, store, control socket) as a trio *guest* of the program's
asyncio loop (``trio.lowlevel.start_guest_run``): one thread, both loops stepping in turn.
The program talks to it with the typed ``AsyncClient``::

    async with EmbeddedNode(data_dir="~/.edgeswarm") as node:
        await node.client.wait(peers=1)
        hits = await node.client.search("jazz")

Leaving the block stops the node cleanly (as SIGTERM does a daemon) and waits for it. If
the node fails while the block runs, the block is cancelled and the node's exception is
raised from ``async with``; an exception in the block stops the node and goes on up.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import trio

from edgeswarm.node.config import NodeConfig
from edgeswarm.node.control.client import DEFAULT_DATA_DIR, AsyncClient
from edgeswarm.node.daemon import run_daemon
from edgeswarm.node.node import Node


class NodeStopped(Exception):
    """The embedded node ended while the program still used it (its cause is chained)."""


class EmbeddedNode:
    """An edgeswarm node run by the current asyncio loop; ``async with`` starts and stops it.

    Parameters
    ----------
    config : NodeConfig, optional
        As ``edgeswarm node run --config`` reads it (``node.config.load_node_config``);
        the default config when omitted.
    data_dir : path
        The node's key, store and control socket, as for the daemon; one node at a time.
    """

    def __init__(self, config: NodeConfig | None = None, data_dir: str | Path = DEFAULT_DATA_DIR) -> None:
        self.config = config or NodeConfig()
        self.data_dir = Path(data_dir).expanduser()
        self.client = AsyncClient(self.data_dir)
        self.peer_id: str | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._started: asyncio.Future[None] | None = None
        self._done: asyncio.Future[BaseException | None] | None = None  # how trio's run ended
        self._body: asyncio.Task[Any] | None = None
        self._failed_while_running = False
        self._exiting = False
        self._stop_asked = False  # before trio's run made its stop event (cancelled while starting)

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._started, self._done = loop.create_future(), loop.create_future()
        self._body = asyncio.current_task()
        trio.lowlevel.start_guest_run(
            self._run,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=self._finished,
            host_uses_signal_set_wakeup_fd=True,  # asyncio owns the process's signal wakeup fd
        )
        try:
            await asyncio.shield(self._started)
        except BaseException:
            await self._stop_and_wait()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._exiting = True
        failure = await self._stop_and_wait()
        if failure is not None:
            if self._failed_while_running and self._body is not None:
                self._body.uncancel()  # the cancellation was ours, to end the block
            raise NodeStopped(f"the embedded node failed: {failure!r}") from failure

    async def _stop_and_wait(self) -> BaseException | None:
        assert self._done is not None
        self._stop_asked = True
        if not self._done.done() and self._token is not None and self._stop is not None:
            self._token.run_sync_soon(self._stop.set)
        return await asyncio.shield(self._done)

    async def _run(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        if self._stop_asked:
            self._stop.set()
        async with trio.open_nursery() as nursery:
            node: Node = await nursery.start(_daemon, self.config, self.data_dir, self._stop)
            self.peer_id = node.identity.peer_id
            assert self._started is not None
            self._started.set_result(None)

    def _finished(self, result: Any) -> None:
        """Trio's run ended (``result``: stopped, or failed): tell whoever waits in asyncio."""
        assert self._started is not None and self._done is not None
        try:
            result.unwrap()
            failure = None
        except BaseException as exc:  # noqa: BLE001 (whatever ended the node is the caller's to see)
            failure = _single(exc)
        if not self._started.done():  # failed before it served: __aenter__ raises it
            self._started.set_exception(failure or NodeStopped("the node ended before it started"))
            self._started.exception()  # retrieved: __aenter__ may already have gone
        elif failure is not None and not self._exiting:
            self._failed_while_running = True  # the block is still running: end it
            if self._body is not None and not self._body.done():
                self._body.cancel()
        self._done.set_result(failure)


def _single(error: BaseException) -> BaseException:
    """The one exception inside trio's nursery groups (a ConfigError, not a group of one)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def _daemon(config: NodeConfig, data_dir: Path, stop: trio.Event, *, task_status: trio.TaskStatus[Node]) -> None:
    await run_daemon(config, data_dir, until=stop.wait, task_status=task_status)
