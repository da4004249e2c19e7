"""Typed node configuration from TOML, with errors that name the file, key and type.

The defaults below are the documented ones; ``configs/node.toml`` restates them for users
to copy and edit (a test keeps the two equal).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec

T = TypeVar("T")

Positive = Annotated[float, msgspec.Meta(gt=0)]


class ConfigError(Exception):
    """A configuration file is missing, not TOML, or has a wrong key or value."""


class Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base of every config table: unknown keys are errors, values are immutable."""


class MembershipConfig(Section, frozen=True):
    """Peer sampling: Cyclon shuffles, and min-wise samplers that Sybils cannot bias by volume
    (see ``protocols.membership.cyclon`` and ``protocols.membership.samplers``).

    Parameters
    ----------
    view_size : int (default: 20)
    shuffle_length : int (default: 8)
        Entries exchanged per shuffle; no shuffle brings in more.
    shuffle_interval : float (default: 10.0)
        Seconds between a node's shuffles.
    request_timeout : float (default: 5.0)
        Seconds to wait for a shuffle reply before dropping the peer from the view.
    samplers : int (default: 20)
        Min-wise sampler slots; the view services draw from is what they hold. 0 turns them
        off, leaving the plain Cyclon view (open to one-shuffle eclipse: for comparison only).
    pushes_per_interval : int (default: 4)
        Incoming shuffles per ``shuffle_interval`` whose entries may enter the Cyclon view
        (each peer at most one); the rest are answered but not taken in.
    """

    view_size: Annotated[int, msgspec.Meta(ge=2, le=1000)] = 20
    shuffle_length: Annotated[int, msgspec.Meta(ge=1, le=64)] = 8
    shuffle_interval: Positive = 10.0
    request_timeout: Positive = 5.0
    samplers: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 20
    pushes_per_interval: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 4


class EnvelopeConfig(Section, frozen=True):
    """Acceptance window for incoming envelopes.

    Parameters
    ----------
    max_age : float (default: 600.0)
        Oldest ``ts`` accepted, in seconds before now.
    max_skew : float (default: 120.0)
        Furthest ``ts`` accepted ahead of now (clock skew between peers).
    replay_window : int (default: 64)
        Out-of-order sequence numbers tolerated per sender.
    max_senders : int (default: 65536)
        Senders whose replay state is kept (LRU).
    """

    max_age: Positive = 600.0
    max_skew: Positive = 120.0
    replay_window: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 64
    max_senders: Annotated[int, msgspec.Meta(ge=1)] = 65536


class StoreConfig(Section, frozen=True):
    """Persistence of node state.

    Parameters
    ----------
    persist_interval : float (default: 60.0)
        Seconds between snapshots of the view and the counters (also written on stop).
    metrics_snapshots_kept : int (default: 100)
    """

    persist_interval: Positive = 60.0
    metrics_snapshots_kept: Annotated[int, msgspec.Meta(ge=1)] = 100


class PresenceConfig(Section, frozen=True):
    """Presence announcements on gossip (see ``node.swarm.presence``).

    Parameters
    ----------
    enabled : bool (default: True)
    interval : float (default: 60.0)
        Seconds between a node's announcements. Every node hears every announcement, so
        the swarm-wide cost grows with the square of its size: raise it for large swarms.
    max_peers : int (default: 4096)
        Announcers remembered (LRU).
    """

    enabled: bool = True
    interval: Positive = 60.0
    max_peers: Annotated[int, msgspec.Meta(ge=1)] = 4096


class RankingConfig(Section, frozen=True):
    """G-Rank search (see ``learning.grank`` and ``node.ranking``: ``click_log`` and ``ranking``).

    Parameters
    ----------
    enabled : bool (default: True)
    top_k_terms : int (default: 10)
        K of the TopK query terms compared between nodes.
    isolation : float (default: 0.0)
        F in R = sum C (S + F): 0 counts only similar peers, 1 also plain popularity.
    p_explore : float (default: 0.5)
        Chance that two random results swap places (the paper's exploration).
    results : int (default: 10)
    pull_rows : int (default: 500)
        Rows asked for per pull (at most 500; a reply also stops at 1 MiB).
    pull_timeout : float (default: 5.0)
    pull_rounds : int (default: 1)
        Replies taken from one peer per pull while they come back full.
    gossip : "digest", "pull" or "push" (default: "digest")
        After each click, ask a random peer for rows. ``pull`` is the paper's: the peer
        sends the rows it has not sent us yet (its progress pointer for us), many of which
        we may have had from others. ``digest`` sends what we hold per issuer with the
        request, so the peer sends only rows we lack (Scuttlebutt-style anti-entropy).
        ``push`` sends a random peer the rows it has not had from us (unsolicited, so
        easier to flood: only a node in push mode accepts pushed rows).
    anti_entropy_interval : float (default: 30.0)
        Seconds between background gossip rounds (each x U(0.75, 1.25)), the same pull (or
        push) a click starts, so a node whose user stops clicking still converges; 0 turns
        them off (gossip only after clicks).
    anti_entropy_max_interval : float (default: 480.0)
        While background rounds bring nothing new, the interval doubles up to this; a round
        that brings rows, or a click, resets it.
    rows_per_peer_minute : int (default: 3000)
        Rows taken from one sending peer per minute (burst as large); the rest are left
        for a later pull.
    rows_per_issuer_minute : int (default: 600)
        Rows of one issuer taken per minute, whoever relays them.
    rows_per_minute : int (default: 12000)
        Rows taken per minute from all peers together (burst: 2.5 seconds' worth), so that
        many throwaway senders cannot add up to more work than the node can spare. A push
        that would find no room is refused before it is read.
    max_log_mb : float (default: 64.0)
        Megabytes of signed rows (as received) the click log keeps; past it, whole issuers
        are evicted (never met ones first, fewest rows first, oldest first; our own never)
        down to 90%. The rows and G-Rank's counts live in the store, not in memory: the
        store file grows to about three times this with the worst rows, while the daemon's
        memory stays flat.
    max_rows : int (default: 200000)
        Rows the click log keeps, with the same eviction.
    max_issuers : int (default: 5000)
        Issuers the click log keeps, with the same eviction.
    """

    enabled: bool = True
    top_k_terms: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    isolation: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    p_explore: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    results: Annotated[int, msgspec.Meta(ge=1, le=20)] = 10
    pull_rows: Annotated[int, msgspec.Meta(ge=1, le=500)] = 500
    pull_timeout: Positive = 5.0
    pull_rounds: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    gossip: Literal["digest", "pull", "push"] = "digest"
    anti_entropy_interval: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    anti_entropy_max_interval: Positive = 480.0
    rows_per_peer_minute: Annotated[int, msgspec.Meta(ge=1)] = 3000
    rows_per_issuer_minute: Annotated[int, msgspec.Meta(ge=1)] = 600
    rows_per_minute: Annotated[int, msgspec.Meta(ge=6)] = 12_000
    max_log_mb: Annotated[float, msgspec.Meta(ge=0.1)] = 64.0
    max_rows: Annotated[int, msgspec.Meta(ge=100)] = 200_000
    max_issuers: Annotated[int, msgspec.Meta(ge=10)] = 5000


TaskValue = str | int | float | bool


class FederationConfig(Section, frozen=True):
    """Federated rounds over the swarm (see ``node.federation``).

    Parameters
    ----------
    enabled : bool (default: False)
        Needs the ``learn`` extra (torch, flwr, PyG).
    auto_join : bool (default: True)
        Join every announced round whose task this node offers.
    tasks : table of tables (default: none)
        Tasks this node offers, each with the Flower ``node_config`` its ClientApp reads,
        e.g. ``[node.federation.tasks.subgraph]`` with ``partition-id = 3``.
    join_window : float (default: 10.0)
        Seconds a host waits for joins after announcing.
    max_clients : int (default: 64)
        Participants a hosted run takes at most (a run's own ``max_clients`` may ask for
        fewer); once that many joined, the run starts and refuses the rest.
    reply_timeout : float (default: 120.0)
        Seconds a host waits for each round's replies.
    chunk_timeout : float (default: 30.0)
    max_payload_mb : float (default: 256)
        Largest Flower message this node accepts.
    max_examples : float (default: 1e6)
        Largest weight (``num-examples``, or the strategy's weight metric) a reply may
        claim; a reply above it is rejected for the round.
    weight_cap : float (default: 10.0)
        A reply's weight is cut to this many times the median of the other replies'.
    """

    enabled: bool = False
    auto_join: bool = True
    tasks: dict[str, dict[str, TaskValue]] = msgspec.field(default_factory=dict)
    join_window: Positive = 10.0
    max_clients: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64
    reply_timeout: Positive = 120.0
    chunk_timeout: Positive = 30.0
    max_payload_mb: Positive = 256.0
    max_examples: Positive = 1e6
    weight_cap: Annotated[float, msgspec.Meta(ge=1.0)] = 10.0


class AdaptersConfig(Section, frozen=True):
    """LoRA deltas: train, announce, fetch, verify, merge (see ``node.adapters``).

    Parameters
    ----------
    enabled : bool (default: False)
        Needs the ``learn`` extra (torch, peft, safetensors, scikit-learn).
    task : str (default: "digits")
        The bundled base model and its local data (``learning.digits``).
    node_index, nodes, clusters, samples : int
        Which share of the bundled data this node holds (its group names digits its own way).
    rank, alpha, targets : LoRA shape (default: 8, 16, ["out"]: the classifier, whose merges
        act as logit ensembles; hidden-layer targets merge worse, see docs/lora.md)
    epochs, lr : local training (default: 100 full-batch Adam steps, 0.01)
    dtype : "float32" or "float16" (default: "float32")
        Precision of published deltas.
    auto_fetch : bool (default: False)
        Fetch every compatible announced delta (else only ``lora pull`` fetches).
    top_k, min_gain : the merge policy: peers' deltas whose merge with ours gains at least
        ``min_gain`` validation accuracy, best ``top_k`` (default: 10, 0.0).
    max_delta_kb : float (default: 1024)
    max_known : int (default: 1000)
        Announced deltas remembered.
    """

    enabled: bool = False
    task: Literal["digits"] = "digits"
    node_index: Annotated[int, msgspec.Meta(ge=0)] = 0
    nodes: Annotated[int, msgspec.Meta(ge=1)] = 50
    clusters: Annotated[int, msgspec.Meta(ge=1, le=10)] = 5
    samples: Annotated[int, msgspec.Meta(ge=4, le=1000)] = 120
    rank: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8
    alpha: Positive = 16.0
    targets: list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]] = msgspec.field(
        default_factory=lambda: ["out"]
    )
    epochs: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100
    lr: Positive = 0.01
    dtype: Literal["float32", "float16"] = "float32"
    auto_fetch: bool = False
    top_k: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    min_gain: float = 0.0
    max_delta_kb: Positive = 1024.0
    max_known: Annotated[int, msgspec.Meta(ge=1)] = 1000


Multiaddr = Annotated[str, msgspec.Meta(pattern=r"^/", max_length=512)]


class NetworkConfig(Section, frozen=True):
    """The libp2p transport of a real daemon (ignored by the simulator's virtual network).

    Parameters
    ----------
    listen : list of multiaddr (default: ["/ip4/0.0.0.0/tcp/4001"])
    bootstrap : list of multiaddr (default: [])
        Full multiaddrs ending in ``/p2p/<peer id>``; used when the stored view is empty.
    relays : list of multiaddr (default: [])
        Circuit relays (v2; an edgeswarm node or any libp2p relay), full multiaddrs ending in
        ``/p2p/<peer id>``. A node behind a NAT holds a reservation on each and advertises
        ``<relay>/p2p-circuit/p2p/<itself>``, so that peers reach it through them.
    relay_service : bool or "auto" (default: "auto")
        Relay for peers behind NATs within the bounds below: "auto" while AutoNAT finds this
        node publicly reachable, true always, false never.
    auto_relays : int (default: 2)
        While AutoNAT finds this node private, reserve on up to this many connected peers
        that relay (besides ``relays``), and advertise them.
    relay_reservations : int (default: 128)
        Peers holding a reservation with this relay at once.
    relay_circuits_per_peer : int (default: 8)
        Circuits at once to one reserved peer.
    relay_circuit_seconds : int (default: 120)
        How long one relayed circuit may last.
    relay_circuit_kb : int (default: 128)
        KiB one circuit may carry (go-libp2p's default): enough to set up a direct
        connection and for small requests; bulk transfers fail at the limit with an error.
    mdns : bool (default: True)
        Find peers on the local network by mDNS.
    eclipse_protection : bool (default: True)
        GossipSub mesh diversity by IP; turn off for swarms on one host (loopback).
    inbound_connections : int (default: 256)
        Inbound connections at once, handshaking or established.
    connections_per_ip : int (default: 32)
        Inbound connections at once from one IP address.
    handshake_timeout : float (default: 5.0)
        Seconds an inbound connection has to finish Noise and yamux.
    inbound_streams : int (default: 256)
        Requests served at once over all peers.
    streams_per_peer : int (default: 16)
        Requests served at once for one peer.
    inflight_request_mb : float (default: 64)
        MiB of large requests (over 64 KiB) read or served at once over all peers.
    inflight_request_mb_per_peer : float (default: 16)
        The same for one peer.
    gossip_per_origin : float (default: 10.0)
        Gossip messages a second accepted from one origin (the rest are neither delivered
        nor forwarded, and an origin that floods us directly is penalized).
    gossip_burst : float (default: 50.0)
        Messages an origin may send at once before its rate applies.
    """

    listen: list[Multiaddr] = msgspec.field(default_factory=lambda: ["/ip4/0.0.0.0/tcp/4001"])
    bootstrap: list[Multiaddr] = msgspec.field(default_factory=list)
    relays: list[Multiaddr] = msgspec.field(default_factory=list)
    relay_service: bool | Literal["auto"] = "auto"
    auto_relays: Annotated[int, msgspec.Meta(ge=0, le=16)] = 2
    relay_reservations: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 128
    relay_circuits_per_peer: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 8
    relay_circuit_seconds: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = 120
    relay_circuit_kb: Annotated[int, msgspec.Meta(ge=1, le=1_048_576)] = 128
    mdns: bool = True
    eclipse_protection: bool = True
    inbound_connections: Annotated[int, msgspec.Meta(ge=1)] = 256
    connections_per_ip: Annotated[int, msgspec.Meta(ge=1)] = 32
    handshake_timeout: Positive = 5.0
    inbound_streams: Annotated[int, msgspec.Meta(ge=1)] = 256
    streams_per_peer: Annotated[int, msgspec.Meta(ge=1)] = 16
    inflight_request_mb: Positive = 64.0
    inflight_request_mb_per_peer: Positive = 16.0
    gossip_per_origin: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    gossip_burst: Annotated[float, msgspec.Meta(ge=1)] = 50.0


class NodeConfig(Section, frozen=True):
    """Everything a node reads from ``configs/node.toml``.

    Parameters
    ----------
    data_dir : str (default: "~/.edgeswarm")
        Where the identity key and the store live.
    swarm : str (default: "")
        The swarm's name: nodes of differently named swarms that meet (on a shared relay,
        say) speak different protocols and topics, so they never shuffle, pull or gossip
        with each other. "" is the default swarm.
    """

    data_dir: str = "~/.edgeswarm"
    swarm: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$|^$")] = ""
    membership: MembershipConfig = msgspec.field(default_factory=MembershipConfig)
    envelope: EnvelopeConfig = msgspec.field(default_factory=EnvelopeConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    presence: PresenceConfig = msgspec.field(default_factory=PresenceConfig)
    ranking: RankingConfig = msgspec.field(default_factory=RankingConfig)
    federation: FederationConfig = msgspec.field(default_factory=FederationConfig)
    adapters: AdaptersConfig = msgspec.field(default_factory=AdaptersConfig)
    network: NetworkConfig = msgspec.field(default_factory=NetworkConfig)


_AT = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")


def convert(raw: Any, into: type[T], source: str) -> T:
    """Build ``into`` from parsed TOML, re-raising problems as one-line ``ConfigError``."""
    try:
        return msgspec.convert(raw, into)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _AT.match(text)
        msg, path = (match["msg"], match["path"]) if match else (text, "")
        key = path.lstrip(".")
        unknown = _UNKNOWN.match(msg)
        if unknown:
            key = f"{key}.{unknown['key']}" if key else unknown["key"]
            raise ConfigError(f"{source}: unknown key '{key}'") from None
        msg = msg.replace("`", "")
        msg = msg[0].lower() + msg[1:] if msg else msg
        raise ConfigError(f"{source}: key '{key or '(top level)'}': {msg}") from None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_toml(path: Path, into: type[T]) -> T:
    """Read ``path`` and convert it into ``into``."""
    return convert(read_toml(path), into, str(path))


def load_node_config(path: Path | None) -> NodeConfig:
    """The node config at ``path``, or the built-in defaults when ``path`` is None."""
    return NodeConfig() if path is None else load_toml(path, NodeConfig)
