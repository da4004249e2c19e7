"""The ``edgeswarm`` command: the composition root that gathers every command group."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import msgspec
import trio
import typer
from rich.console import Console
from rich.table import Table

from edgeswarm.sim.cli import app as sim_app

from . import logs
from .config import load_node_config
from .control import call
from .identity import load_or_create
from .user_errors import UsageProblem, user_errors

DEFAULT_DATA_DIR = Path("~/.edgeswarm")

app = typer.Typer(
    help="edgeswarm: a decentralized edge-learning agent.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
id_app = typer.Typer(help="This node's identity.", no_args_is_help=True)
node_app = typer.Typer(help="Run the node daemon.", no_args_is_help=True)
catalog_app = typer.Typer(help="Items this node offers in search.", no_args_is_help=True)
app.add_typer(id_app, name="id")
app.add_typer(node_app, name="node")
app.add_typer(catalog_app, name="catalog")
app.add_typer(sim_app, name="sim")

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="EDGESWARM_DATA_DIR", help="Node data directory (key and store).", file_okay=False),
]


@app.callback()
def main_options(
    log_json: Annotated[bool, typer.Option("--log-json", help="Log JSON lines (for machines).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings and errors only.")] = False,
) -> None:
    if verbose and quiet:
        raise typer.BadParameter("--verbose and --quiet exclude each other")
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logs.configure(json_lines=log_json, level=level)


@id_app.command("show")
def id_show(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Print this node's PeerID (creating its key on first use)."""
    with user_errors():
        identity = load_or_create(data_dir.expanduser())
    typer.echo(identity.peer_id)


@node_app.command("run")
def node_run(
    config: Annotated[Optional[Path], typer.Option("--config", help="Node config TOML.", dir_okay=False)] = None,
    data_dir: Annotated[
        Optional[Path],
        typer.Option("--data-dir", envvar="EDGESWARM_DATA_DIR", help="Overrides the config's data_dir.", file_okay=False),
    ] = None,
    listen: Annotated[Optional[list[str]], typer.Option("--listen", help="Listen multiaddr (repeatable).")] = None,
    bootstrap: Annotated[
        Optional[list[str]], typer.Option("--bootstrap", help="Bootstrap multiaddr with /p2p/ id (repeatable).")
    ] = None,
    mdns: Annotated[Optional[bool], typer.Option("--mdns/--no-mdns", help="Find peers on the LAN by mDNS.")] = None,
) -> None:
    """Run this node on libp2p until SIGINT or SIGTERM."""
    from .daemon import run_daemon

    with user_errors():
        settings = load_node_config(config)
        network = settings.network
        network = msgspec.structs.replace(
            network,
            listen=listen or network.listen,
            bootstrap=bootstrap if bootstrap is not None else network.bootstrap,
            mdns=network.mdns if mdns is None else mdns,
        )
        settings = msgspec.structs.replace(settings, network=network)
        directory = (data_dir or Path(settings.data_dir)).expanduser()
        trio.run(run_daemon, settings, directory)


@app.command("status")
def status(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show the running daemon's identity, addresses, peers and counters."""
    with user_errors():
        result = call(data_dir.expanduser(), {"cmd": "status"})
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console = Console()
    table = Table(title=f"node {result['peer_id']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("addresses", "\n".join(result["addresses"]) or "-")
    table.add_row("connected peers", str(len(result["peers"])))
    table.add_row("membership view", str(len(result["view"])))
    table.add_row("heard on gossip", str(result["heard_from"]))
    table.add_row("services", ", ".join(result["services"]))
    for name, labels in result["counters"].items():
        table.add_row(name, ", ".join(f"{k or '-'}={v}" for k, v in labels.items()))
    if result["transport"]:
        table.add_row("transport", ", ".join(f"{k}={v}" for k, v in result["transport"].items()))
    console.print(table)


@app.command("ping")
def ping(
    peer: Annotated[str, typer.Argument(help="PeerID to ping.")],
    size: Annotated[int, typer.Option("--bytes", min=0, max=2 * 1024 * 1024, help="Payload size.")] = 0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Ask the running daemon to ping PEER with a payload and check it comes back intact."""
    with user_errors():
        result = call(data_dir.expanduser(), {"cmd": "ping", "peer": peer, "bytes": size})
        if not result["intact"]:
            raise UsageProblem(f"{peer} echoed {size} bytes back altered")
    typer.echo(f"{peer}: {result['bytes']} bytes, round trip {result['rtt_ms']:.1f} ms, intact")


@app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="Words to search for.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Ranked results from the running daemon (G-Rank over the swarm's click logs)."""
    with user_errors():
        results = call(data_dir.expanduser(), {"cmd": "search", "query": query})
    if not results:
        Console(stderr=True).print("no results")
        return
    table = Table(title=f"results for {query!r}")
    for column in ("#", "item", "title", "tags"):
        table.add_column(column)
    for n, r in enumerate(results, 1):
        table.add_row(str(n), r["item"], r["title"], ", ".join(r["tags"]))
    Console().print(table)


@app.command("click")
def click(
    item: Annotated[str, typer.Argument(help="Item id from the last search's results.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Record that you chose ITEM for your last search (a signed click-log row)."""
    with user_errors():
        row = call(data_dir.expanduser(), {"cmd": "click", "item": item})
    typer.echo(f"clicked {row['item']} for {' '.join(row['terms'])!r} (query {row['number']})")


@catalog_app.command("add")
def catalog_add(
    file: Annotated[Path, typer.Argument(help="CSV (item,title,tags with tags split by ';') or JSON list.", dir_okay=False)],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Import catalog items into the running daemon."""
    from .catalog_file import read_catalog

    with user_errors():
        items = read_catalog(file)
        result = call(data_dir.expanduser(), {"cmd": "catalog_add", "items": items})
    typer.echo(f"added {result['added']} items from {file}")


def main() -> None:
    app()
