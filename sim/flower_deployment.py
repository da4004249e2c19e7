"""An ordinary Flower deployment on loopback: one ``flower-superlink``, N ``flower-supernode``.

Runs edgeswarm's subgraph ServerApp/ClientApp (``configs/flower``) the standard Flower way,
to show that a node's ClientApp also works in a plain Flower federation, and to time a
round there against a round over the swarm. Telemetry is off; nothing leaves loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
APP_DIR = REPO / "configs" / "flower"


class DeploymentError(Exception):
    """The Flower deployment did not start or the run did not finish."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    found = Path(sys.executable).parent / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        raise DeploymentError(f"{name} not found (install the 'learn' extra: pip install -e '.[learn]')")
    return path


def run_flower_round(
    work: Path, *, clients: int = 2, rounds: int = 1, graph_source: str = "builtin", timeout: float = 300.0
) -> dict[str, Any]:
    """Run ``rounds`` FedAvg rounds under superlink + ``clients`` supernodes; returns the metrics.

    The result has ``seconds`` (the ServerApp's ``Strategy.start`` wall time), ``train`` and
    ``evaluate`` metrics per round as the ServerApp recorded them.
    """
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_HOME": str(work / "home"),
        # the superlink starts `flower-superexec` by name: find it beside this Python, venv activated or not
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    port = _free_port()  # Flower 1.42 serves its Fleet, Control and runtime APIs on one HTTP port
    app = work / "app"
    shutil.copytree(APP_DIR, app, dirs_exist_ok=True)  # `flwr run` rewrites the app's pyproject
    (work / "home").mkdir(exist_ok=True)
    (work / "home" / "config.toml").write_text(f'[superlink.local]\naddress = "127.0.0.1:{port}"\ninsecure = true\n')
    result_file = work / "result.json"
    processes: list[subprocess.Popen] = []

    def start(args: list[str], log: str) -> subprocess.Popen:
        with open(work / log, "wb") as handle:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=work)
        processes.append(process)
        return process

    try:
        start(
            [
                _tool("flower-superlink"),
                "--insecure",
                "--database",
                str(work / "state.db"),
                "--disable-runtime-dependency-installation",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            "superlink.log",
        )
        for i in range(clients):
            start(
                [
                    _tool("flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{port}",
                    "--port",
                    str(_free_port()),
                    "--node-config",
                    f'partition-id={i} num-partitions={clients} graph-source="{graph_source}"',
                ],
                f"supernode-{i}.log",
            )
        config = (
            f"num-server-rounds={rounds} min-nodes={clients} num-partitions={clients} "
            f'graph-source="{graph_source}" result-file="{result_file}"'
        )
        deadline = time.monotonic() + timeout
        while True:  # the superlink takes a moment to accept runs
            run = subprocess.run(
                [_tool("flwr"), "run", str(app), "local", "--run-config", config, "--stream"],
                check=False,
                env=env,
                cwd=work,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            (work / "flwr-run.log").write_text(run.stdout + run.stderr)
            if (
                run.returncode == 0
                or time.monotonic() > deadline
                or "unavailable" not in (run.stdout + run.stderr).lower()
            ):
                break
            time.sleep(1.0)
        while not result_file.exists():
            if time.monotonic() > deadline:
                raise DeploymentError(f"no result after {timeout:.0f} s; logs in {work}")
            time.sleep(0.5)
        return json.loads(result_file.read_text())  # written whole, then renamed into place
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
