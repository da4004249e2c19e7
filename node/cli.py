"""The ``edgeswarm`` command: the composition root that gathers every command group."""

from __future__ import annotations

import functools
import importlib
import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import msgspec
import trio
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from edgeswarm.node import logs
from edgeswarm.node.config import load_node_config
from edgeswarm.node.control import requests as req
from edgeswarm.node.control.client import Client
from edgeswarm.node.control.replies import FlOverview
from edgeswarm.node.data_dir import prepare
from edgeswarm.node.fl import catalog as fl_catalog
from edgeswarm.node.fl.run_records import LIVE as LIVE_RUN_STATES
from edgeswarm.node.identity import load_or_create
from edgeswarm.node.user_errors import UsageProblem, user_errors

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
fl_app = typer.Typer(help="Federated learning rounds over the swarm (Flower).", no_args_is_help=True)
subnet_app = typer.Typer(help="The Once-for-All subnet that fits this device.", no_args_is_help=True)
lora_app = typer.Typer(help="LoRA deltas: train, publish, list, pull and merge adapters.", no_args_is_help=True)
app.add_typer(id_app, name="id")
app.add_typer(node_app, name="node")
app.add_typer(catalog_app, name="catalog")
app.add_typer(fl_app, name="fl")
app.add_typer(lora_app, name="lora")
app.add_typer(subnet_app, name="subnet")


class _SimCommands(TyperGroup):
    """``edgeswarm sim``: the simulator's commands, loaded only when one of them is asked for,
    so the daemon and every other command start without importing the simulator."""

    @functools.cached_property
    def _loaded(self) -> TyperGroup:
        commands = importlib.import_module("edgeswarm.sim.commands")
        return typer.main.get_group(commands.app)

    def list_commands(self, ctx: Any) -> list[str]:
        return self._loaded.list_commands(ctx)

    def get_command(self, ctx: Any, name: str) -> Any:
        return self._loaded.get_command(ctx, name)


sim_app = typer.Typer(
    cls=_SimCommands, help="Simulate hundreds of peers on a virtual network in virtual time.", no_args_is_help=True
)
app.add_typer(sim_app, name="sim")

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", envvar="EDGESWARM_DATA_DIR", help="Node data directory (key and store).", file_okay=False
    ),
]


@app.callback()
def main_options(
    log_json: Annotated[
        bool, typer.Option("--log-json", envvar="EDGESWARM_LOG_JSON", help="Log JSON lines (for machines).")
    ] = False,
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
        prepare(data_dir.expanduser())  # a directory the daemon would refuse gets no key either
        identity = load_or_create(data_dir.expanduser())
    typer.echo(identity.peer_id)


@node_app.command("run")
def node_run(
    config: Annotated[Path | None, typer.Option("--config", help="Node config TOML.", dir_okay=False)] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", envvar="EDGESWARM_DATA_DIR", help="Overrides the config's data_dir.", file_okay=False
        ),
    ] = None,
    listen: Annotated[list[str] | None, typer.Option("--listen", help="Listen multiaddr (repeatable).")] = None,
    bootstrap: Annotated[
        list[str] | None, typer.Option("--bootstrap", help="Bootstrap multiaddr with /p2p/ id (repeatable).")
    ] = None,
    mdns: Annotated[bool | None, typer.Option("--mdns/--no-mdns", help="Find peers on the LAN by mDNS.")] = None,
) -> None:
    """Run this node on libp2p until SIGINT or SIGTERM.

    Exit codes: 0 stopped cleanly, 2 bad option, 3 bad config, 4 identity key problem,
    5 store problem, 7 cannot listen (port in use), 8 data dir in use by another daemon.
    """
    from edgeswarm.node.addresses import parse_bootstrap, parse_listen
    from edgeswarm.node.daemon import run_daemon

    with user_errors():
        try:
            for addr in listen or ():
                parse_listen(addr)
            for addr in bootstrap or ():
                parse_bootstrap(addr)
        except ValueError as exc:
            raise UsageProblem(str(exc)) from None
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
        result = Client(data_dir).status()
    if as_json:
        _print_json(result)
        return
    console = Console()
    table = Table(title=f"node {result.peer_id}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("addresses", "\n".join(result.addresses) or "-")
    table.add_row("connected peers", f"{len(result.peers)} ({len(result.relayed)} through a relay)")
    table.add_row("reachability (AutoNAT)", result.nat)
    table.add_row("relay reservations", "\n".join(result.relays) or "-")
    if result.relay_service is not None:
        service = result.relay_service
        table.add_row("relaying for others", f"{service['reservations']} reservations, {service['circuits']} circuits")
    table.add_row("membership view", str(len(result.view)))
    table.add_row("heard on gossip", str(result.heard_from))
    table.add_row("services", ", ".join(result.services))
    for name, labels in result.counters.items():
        table.add_row(name, ", ".join(f"{k or '-'}={v}" for k, v in labels.items()))
    if result.transport:
        table.add_row("transport", ", ".join(f"{k}={v}" for k, v in result.transport.items()))
    console.print(table)


def _print_json(result: object) -> None:
    typer.echo(json.dumps(msgspec.to_builtins(result), indent=2))


@app.command("ping")
def ping(
    peer: Annotated[str, typer.Argument(help="PeerID to ping.")],
    size: Annotated[int, typer.Option("--bytes", min=0, max=2 * 1024 * 1024, help="Payload size.")] = 0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Ask the running daemon to ping PEER with a payload and check it comes back intact."""
    with user_errors():
        pong = Client(data_dir).ping(peer, size)
        if not pong.intact:
            raise UsageProblem(f"{peer} echoed {size} bytes back altered")
    typer.echo(f"{peer}: {pong.bytes} bytes, round trip {pong.rtt_ms:.1f} ms, intact")


def _counter_minimum(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not value.isdigit():
        raise typer.BadParameter(
            f"{text!r} is not NAME=N (a counter as `status` shows it, e.g. membership.shuffle_ok=3)"
        )
    return name, int(value)


@app.command("wait")
def wait(
    peer: Annotated[str | None, typer.Option("--peer", help="Until connected to this PeerID.")] = None,
    peers: Annotated[int, typer.Option("--peers", min=0, help="Until at least this many peers are connected.")] = 0,
    heard_from: Annotated[
        int, typer.Option("--heard-from", min=0, help="Until presence was heard from at least this many peers.")
    ] = 0,
    known: Annotated[
        list[str] | None, typer.Option("--known", help="Until this PeerID is in the view or connected (repeatable).")
    ] = None,
    in_view: Annotated[
        list[str] | None, typer.Option("--in-view", help="Until this PeerID is in the membership view (repeatable).")
    ] = None,
    not_in_view: Annotated[
        list[str] | None, typer.Option("--not-in-view", help="Until this PeerID has left the view (repeatable).")
    ] = None,
    disconnected: Annotated[
        list[str] | None,
        typer.Option("--disconnected", help="Until no connection to this PeerID is left (repeatable)."),
    ] = None,
    counter: Annotated[
        list[str] | None,
        typer.Option(
            "--counter",
            help="NAME=N: until the counter NAME (as "
            "`status --json` shows it, group.label) is at least N "
            "(repeatable).",
        ),
    ] = None,
    gossip_peers: Annotated[
        int,
        typer.Option(
            "--gossip-peers", min=0, help="Until every gossip topic reaches at least this many peers directly."
        ),
    ] = 0,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, max=600, help="Seconds to wait at most.")] = 60.0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Block until the running daemon meets every condition given (exit 6 when the timeout passes)."""
    counters = dict(_counter_minimum(c) for c in counter or ())
    request = req.Wait(
        peer=peer,
        peers=peers,
        heard_from=heard_from,
        known=known or [],
        in_view=in_view or [],
        not_in_view=not_in_view or [],
        disconnected=disconnected or [],
        counters=counters,
        gossip_peers=gossip_peers,
        timeout=timeout,
    )
    with user_errors():
        waited = Client(data_dir).request(request)
    typer.echo(f"after {waited.waited_s:g} s: {waited.peers} peers connected, heard from {waited.heard_from}")


@app.command("search")
def search(
    query: Annotated[str, typer.Argument(help="Words to search for.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Ranked results from the running daemon (G-Rank over the swarm's click logs)."""
    with user_errors():
        results = Client(data_dir).search(query)
    if not results:
        Console(stderr=True).print("no results")
        return
    table = Table(title=f"results for {query!r}")
    for column in ("#", "item", "title", "tags"):
        table.add_column(column)
    for n, r in enumerate(results, 1):
        table.add_row(str(n), r.item, r.title, ", ".join(r.tags))
    Console().print(table)


@app.command("click")
def click(
    item: Annotated[str, typer.Argument(help="Item id from the last search's results.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Record that you chose ITEM for your last search (a signed click-log row)."""
    with user_errors():
        row = Client(data_dir).click(item)
    typer.echo(f"clicked {row.item} for {' '.join(row.terms)!r} (query {row.number})")


@catalog_app.command("add")
def catalog_add(
    file: Annotated[
        Path, typer.Argument(help="CSV (item,title,tags with tags split by ';') or JSON list.", dir_okay=False)
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Import catalog items into the running daemon."""
    from edgeswarm.node.ranking.catalog_file import read_catalog

    with user_errors():
        try:
            items = msgspec.convert(read_catalog(file), list[req.CatalogItem])
        except msgspec.ValidationError as exc:
            raise UsageProblem(f"'{file}': {exc}") from None
        result = Client(data_dir).request(req.CatalogAdd(items=items))
    typer.echo(f"added {result.added} items from {file}")


@fl_app.command("host")
def fl_host(
    task: Annotated[str, typer.Option("--task", help="Task to train (this node must offer it too).")],
    # checked by fl_catalog.check_run below (exit 2 naming the choices): no click.Choice, which
    # typer 0.29 no longer takes
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="Aggregation: " + "; ".join(f"{k}: {v.summary}" for k, v in fl_catalog.STRATEGIES.items()) + ".",
        ),
    ] = "fedavg",
    rounds: Annotated[int, typer.Option("--rounds", min=1)] = 3,
    min_clients: Annotated[
        int, typer.Option("--min-clients", min=1, help="Joins needed to start, replies per round.")
    ] = 2,
    max_clients: Annotated[
        int | None,
        typer.Option(
            "--max-clients", min=1, help="Joins accepted at most; the run starts as soon as this many joined."
        ),
    ] = None,
    join_window: Annotated[
        float | None, typer.Option("--join-window", min=0.1, help="Seconds to wait for joins.")
    ] = None,
    reply_timeout: Annotated[float | None, typer.Option("--reply-timeout", min=0.1, help="Seconds per round.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Announce a federated run on the running daemon; it runs in the background."""
    with user_errors():
        problem = fl_catalog.check_run(task, strategy, min_clients)
        if problem:
            raise UsageProblem(problem)
    request = req.FlHost(
        task=task,
        strategy=strategy,
        rounds=rounds,
        min_clients=min_clients,
        max_clients=max_clients,
        join_window=join_window,
        reply_timeout=reply_timeout,
    )
    with user_errors():
        started = Client(data_dir).request(request)
    typer.echo(f"announced run {started.run_id} ({strategy}, {rounds} rounds); follow it with `edgeswarm fl status`")


@fl_app.command("join")
def fl_join(
    run_id: Annotated[str, typer.Argument(help="Run id from `edgeswarm fl status` (announced runs).")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Join an announced run whose task this node offers."""
    with user_errors():
        record = Client(data_dir).request(req.FlJoin(run_id=run_id))
    typer.echo(f"joined {record.run_id} ({record.task}, {record.strategy}) hosted by {record.host}")


@fl_app.command("wait")
def fl_wait(
    run_id: Annotated[str, typer.Argument(help="Run id (hosted or joined on this node).")],
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, max=24 * 3600, help="Seconds to wait at most.")
    ] = 600.0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Block until a run has ended; print how (exit 6 on timeout, 1 if the run did not end done)."""
    with user_errors():
        record = Client(data_dir).request(req.FlWait(run_id=run_id, timeout=timeout))
    typer.echo(
        f"{record.run_id}: {record.state} after {len(record.history)}/{record.rounds} rounds"
        + (f" ({record.detail})" if record.detail else "")
    )
    if record.state != "done":
        raise typer.Exit(1)


@fl_app.command("status")
def fl_status(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="Follow live: redraw until every run shown has ended (Ctrl-C stops watching, not the runs)."
        ),
    ] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.2, help="Seconds between redraws with --watch.")] = 2.0,
) -> None:
    """Runs this node hosts or joined (kept across restarts), their participants and metrics per round."""
    with user_errors():
        result = Client(data_dir).request(req.FlStatus())
    if as_json:
        _print_json(result)
        return
    if not watch:
        Console().print(_fl_view(result))
        return
    from rich.live import Live

    with user_errors(), Live(_fl_view(result), console=Console(), auto_refresh=False) as live:
        try:
            while not result.runs or any(run.state in LIVE_RUN_STATES for run in result.runs):
                time.sleep(interval)
                result = Client(data_dir).request(req.FlStatus())
                live.update(_fl_view(result), refresh=True)
        except KeyboardInterrupt:
            pass


def _fl_view(result: FlOverview):
    """``fl status`` as rich renderables: one table per run, newest last."""
    from rich.console import Group
    from rich.text import Text

    parts: list = [Text(f"offers: {', '.join(result.offers) or '-'}")]
    for run in result.runs:
        table = Table(title=f"{run.role} {run.run_id}: {run.task} / {run.strategy}, {run.state} {run.detail}".strip())
        for column in ("round", "status", "replies", "failed", "rejected", "dropped", "mean client test acc"):
            table.add_column(column)
        for r in run.history:
            accs = [c["test-acc"] for c in r.clients.values() if "test-acc" in c]
            mean = f"{sum(accs) / len(accs):.4f}" if accs else "-"
            table.add_row(
                str(r.round), r.status, str(r.replies), str(r.failures), str(len(r.rejected)), str(len(r.dropped)), mean
            )
        parts.append(table)
        parts += [
            Text(f"round {r.round}: {what} {peer}: {why}")
            for r in run.history
            for what, reasons in (("rejected", r.rejected), ("dropped", r.dropped))
            for peer, why in reasons.items()
        ]
        done = len(run.history)
        parts.append(
            Text(
                f"rounds {done}/{run.rounds}" + (f", participants: {len(run.participants)}" if run.participants else "")
            )
        )
    joined = {run.run_id for run in result.runs}
    parts += [
        Text(f"announced: {a.run_id} task {a.task} ({a.strategy}, {a.rounds} rounds) by {a.host}")
        for a in result.announced
        if a.run_id not in joined
    ]
    return Group(*parts)


@lora_app.command("train")
def lora_train(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Train an adapter on this node's data and keep it (content-addressed)."""
    with user_errors():
        row = Client(data_dir).request(req.LoraTrain())
    typer.echo(f"trained {row.digest[:16]} (rank {row.rank}, {row.size} bytes, validation accuracy {row.metric:.3f})")


@lora_app.command("publish")
def lora_publish(
    digest: Annotated[str | None, typer.Argument(help="Hash prefix (default: our newest own or merged).")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Announce an adapter of ours to the swarm and serve its bytes."""
    request = req.LoraPublish(digest=digest or None)
    with user_errors():
        row = Client(data_dir).request(request)
    typer.echo(f"published {row.digest[:16]} ({row.size} bytes)")


@lora_app.command("list")
def lora_list(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Adapters this node holds or has heard of."""
    with user_errors():
        result = Client(data_dir).request(req.LoraList())
    if as_json:
        _print_json(result)
        return
    table = Table(title="adapters")
    for column in ("hash", "origin", "rank", "bytes", "val acc", "signer", "note"):
        table.add_column(column)
    for a in result.adapters:
        mark = " *" if a.digest == result.active else ""
        table.add_row(
            a.digest[:16] + mark, a.origin, str(a.rank), str(a.size), f"{a.metric:.3f}", a.signer[-10:], a.note
        )
    Console().print(table)


@lora_app.command("pull")
def lora_pull(
    digest: Annotated[str, typer.Argument(help="Hash prefix of an announced adapter (see `lora list`).")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Fetch an announced adapter, verify it and store it."""
    with user_errors():
        row = Client(data_dir).request(req.LoraPull(digest=digest))
    typer.echo(f"fetched and verified {row.digest[:16]} from {row.signer}")


@lora_app.command("merge")
def lora_merge(
    policy: Annotated[
        str, typer.Option("--policy", help="validation (peers that help locally) or all.")
    ] = "validation",
    method: Annotated[str, typer.Option("--method", help="flora (exact stacking), ffa or fedavg.")] = "flora",
    force: Annotated[
        bool, typer.Option("--force", help="Activate the merge even if it is worse on validation.")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Merge our adapter with peers' chosen by the policy; it becomes active unless it is worse."""
    with user_errors():
        merged = Client(data_dir).request(req.LoraMerge(policy=policy, method=method, force=force))
    typer.echo(
        f"merged own + {len(merged.peers)} of {merged.considered} peers into {merged.digest[:16]}: "
        f"test accuracy {merged.test_acc:.3f} (own alone {merged.own_test_acc:.3f})"
    )
    if not merged.activated:
        typer.echo(
            f"kept, not activated: validation accuracy {merged.val_acc:.3f} is below the active "
            f"{(merged.active or '')[:16]}'s {merged.active_val_acc:.3f} "
            f"(`lora use {merged.digest[:16]}` or `lora merge --force` to use it anyway)"
        )


@lora_app.command("use")
def lora_use(
    digest: Annotated[str, typer.Argument(help="Hash prefix of a stored adapter (see `lora list`).")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Make a stored adapter active again (an earlier own or merged one, or a verified peer's)."""
    with user_errors():
        row = Client(data_dir).request(req.LoraUse(digest=digest))
    typer.echo(f"active: {row.digest[:16]} ({row.origin}, validation accuracy {row.metric:.3f})")


@subnet_app.command("select")
def subnet_select(
    device: Annotated[
        Path | None,
        typer.Option(
            "--device", help="Declared profile (configs/devices/*.toml); default: measure this machine.", dir_okay=False
        ),
    ] = None,
    budget_ms: Annotated[
        float | None,
        typer.Option("--budget-ms", min=0.001, help="Latency budget when measuring this machine (default 1.0 ms)."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Supernet weights to use instead of the shipped ones (safetensors or torch state dict).",
        ),
    ] = None,
    measurements: Annotated[int, typer.Option("--measurements", min=8, help="Subnets measured by the search.")] = 40,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Search the supernet for the most accurate subnet within the device's latency budget."""
    from edgeswarm.learning.supernet import CheckpointError
    from edgeswarm.node.config import ConfigError
    from edgeswarm.node.subnet.device import load_device, measure_device
    from edgeswarm.node.subnet.subnet import select

    with user_errors():
        if device is not None:
            if budget_ms is not None:
                raise UsageProblem("--budget-ms applies to a measured profile; a declared one has its own budget")
            profile, here = load_device(device), False
        else:
            profile, here = measure_device(budget_ms or 1.0), True
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[cached]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task(f"{profile.name}: measuring subnets", total=measurements, cached="")

            def advance(done: int, total: int, cached: int) -> None:
                bar.update(task, completed=done, total=total, cached=f"({cached} from the cache)" if cached else "")

            try:
                result = select(
                    profile, data_dir, measured_here=here, checkpoint=checkpoint, budget=measurements, progress=advance
                )
            except (FileNotFoundError, CheckpointError) as exc:
                raise ConfigError(f"cannot load the supernet: {exc}") from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"{profile.name}: subnet with accuracy {result['accuracy']:.3f}, measured "
        f"{result['measured_latency_ms']:.3f} ms (predicted {result['predicted_latency_ms']:.3f}, budget "
        f"{result['budget_ms']} ms) -> {result['onnx_path']}"
    )


@subnet_app.command("infer")
def subnet_infer(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Run the selected subnet with onnxruntime on the bundled test images."""
    import time

    from edgeswarm.learning.supernet import image_data
    from edgeswarm.node.subnet.subnet import classify

    x, y = image_data()["test"]
    with user_errors():
        try:
            started = time.perf_counter()
            predicted = classify(data_dir, x.numpy())
        except FileNotFoundError as exc:
            raise UsageProblem(str(exc)) from None
    elapsed = time.perf_counter() - started
    typer.echo(
        f"{len(y)} images: accuracy {(predicted == y.numpy()).mean():.3f}, "
        f"{1000 * elapsed / len(y):.3f} ms per image (batched)"
    )


def main() -> None:
    app()
