"""Real daemons as child processes on loopback, each with its own data dir.

``DaemonGroup`` is a context manager that owns every process it starts and stops them all
on exit (SIGTERM, then SIGKILL after a grace period), also on errors and Ctrl-C, so no
daemon outlives the simulation or test that started it.

Nothing here polls. A daemon says it is ready by sd_notify (``READY=1`` on the datagram
socket named by ``$NOTIFY_SOCKET``, as under systemd), and ``wait_ready`` blocks until that
message or the process's exit, whichever comes first; ``Daemon.wait`` asks the daemon to
block until its state meets conditions (the ``wait`` control command).
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from edgeswarm.node.control.client import call

READY_TIMEOUT = 120.0  # only a daemon that neither starts nor exits takes this long


class DaemonError(Exception):
    """A daemon process did not start or died unexpectedly."""


class Daemon:
    """One ``edgeswarm node run`` child process."""

    def __init__(self, data_dir: Path, args: Sequence[str], log_path: Path, netns: str | None = None) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.log_path = log_path
        self.netns = netns  # run inside this Linux network namespace (``ip netns exec``)
        self.process: subprocess.Popen[bytes] | None = None
        self._notify: socket.socket | None = None  # where the daemon says READY=1
        self._ready = False

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # an abstract socket (no path, nothing to clean up) belongs to one network namespace
        if sys.platform == "linux" and self.netns is None:
            address = f"@edgeswarm-{os.getpid()}-{secrets.token_hex(6)}"
            self._notify.bind("\0" + address[1:])
        else:
            address = os.path.join(tempfile.mkdtemp(prefix="es-"), "notify")  # unix paths: ~100 bytes at most
            self._notify.bind(address)
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "FLWR_TELEMETRY_ENABLED": "0", "NOTIFY_SOCKET": address}
        inside = ["ip", "netns", "exec", self.netns] if self.netns is not None else []
        self.process = subprocess.Popen(
            [
                *inside,
                sys.executable,
                "-m",
                "edgeswarm.node",
                "node",
                "run",
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop them
        )
        log.close()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """Block until the daemon says READY=1 (then return its status) or exits (DaemonError)."""
        if self._ready:
            return self.status()
        assert self.process is not None and self._notify is not None, "start() first"
        # Linux says when the process exits (a pidfd turns readable); elsewhere we look twice a second
        exited = os.pidfd_open(self.process.pid) if hasattr(os, "pidfd_open") else None
        deadline = time.monotonic() + timeout
        try:
            while True:
                watched = [self._notify] if exited is None else [self._notify, exited]
                left = deadline - time.monotonic()
                readable, _, _ = select.select(watched, [], [], max(0.0, left) if exited is not None else 0.5)
                if (exited in readable) or (exited is None and self.process.poll() is not None):
                    self.process.wait()
                    raise DaemonError(
                        f"daemon for {self.data_dir} exited with {self.process.returncode}:\n{self.log()}"
                    )
                if self._notify in readable and b"READY=1" in self._notify.recv(4096).split(b"\n"):
                    self._ready = True
                    return self.status()
                if time.monotonic() >= deadline:
                    raise DaemonError(f"daemon for {self.data_dir} not ready in {timeout:g}s:\n{self.log()}")
        finally:
            if exited is not None:
                os.close(exited)

    def status(self) -> dict[str, Any]:
        return call(self.data_dir, {"cmd": "status"}, timeout=60)

    def request(self, command: dict[str, Any], timeout: float = 60) -> Any:
        return call(self.data_dir, command, timeout=timeout)

    def wait(self, timeout: float = 120.0, **conditions: Any) -> dict[str, Any]:
        """Block until the daemon's state meets ``conditions`` (``node.control.requests.Wait``'s
        fields, e.g. ``known=[peer]``, ``counters={"membership.shuffle_ok": 1}``); returns the
        reply, whose ``status`` is the state that met them. ControlError after ``timeout``."""
        return call(self.data_dir, {"cmd": "wait", "timeout": timeout, **conditions}, timeout=timeout + 30)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)

    def kill(self) -> None:
        """``kill -9``: no chance to clean up (the store must survive it)."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()
        self._close_notify()

    def _close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; return the exit code."""
        if self.process is None:
            return 0
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            self._close_notify()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class DaemonGroup:
    """Start daemons under ``root``; every one is stopped when the ``with`` block exits."""

    def __init__(self, root: Path, extra_args: Sequence[str] = ()) -> None:
        self.root = root
        self.extra_args = list(extra_args)
        self.daemons: list[Daemon] = []

    def __enter__(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        for daemon in self.daemons:
            daemon.signal(signal.SIGTERM)
        for daemon in self.daemons:
            daemon.stop()

    def spawn(
        self,
        name: str,
        *,
        bootstrap: Sequence[str] = (),
        ready: bool = True,
        args: Sequence[str] = (),
        listen: bool = True,
        netns: str | None = None,
    ) -> Daemon:
        """Start daemon ``name``; ``args`` replace the group's extra arguments for this one.

        It listens on a free loopback port unless ``args`` name a ``--listen`` of their own,
        or ``listen`` is false (then its config's ``listen`` holds, e.g. none at all).
        """
        args = [*(args or self.extra_args)]
        if listen and "--listen" not in args:
            args = ["--listen", "/ip4/127.0.0.1/tcp/0", *args]
        args = ["--no-mdns", *args]
        for addr in bootstrap:
            args += ["--bootstrap", addr]
        daemon = Daemon(self.root / name, args, self.root / f"{name}.log", netns)
        self.daemons.append(daemon)
        daemon.start()
        if ready:
            daemon.wait_ready()
        return daemon

    def restart(self, daemon: Daemon, *, args: Sequence[str] | None = None) -> Daemon:
        """Start ``daemon``'s data dir again (same identity and store), optionally with new args.

        ``daemon`` must have ended (``stop`` or ``kill``): while it runs, its control socket
        would answer for the new one, which exits at once (the data dir is in use).
        """
        if daemon.running:
            raise DaemonError(f"the daemon for {daemon.data_dir} still runs: stop or kill it first")
        again = Daemon(daemon.data_dir, daemon.args if args is None else args, daemon.log_path, daemon.netns)
        self.daemons.append(again)
        again.start()
        again.wait_ready()
        return again
