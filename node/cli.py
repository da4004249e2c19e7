"""The ``edgeswarm`` command: the composition root that gathers every command group."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from edgeswarm.sim.cli import app as sim_app

from . import logs
from .identity import load_or_create
from .user_errors import user_errors

DEFAULT_DATA_DIR = Path("~/.edgeswarm")

app = typer.Typer(
    help="edgeswarm: a decentralized edge-learning agent.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
id_app = typer.Typer(help="This node's identity.", no_args_is_help=True)
app.add_typer(id_app, name="id")
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


def main() -> None:
    app()
