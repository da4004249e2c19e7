"""What the control socket accepts: one typed struct per command, decoded once.

A request line is JSON such as ``{"cmd": "ping", "peer": "12D3...", "bytes": 1024}``; the
``cmd`` field picks the struct. Decoding checks every field's type and bounds, so the
command handlers in ``control.server`` only ever see valid requests; anything else becomes a
``BadRequest`` with a message that says what is wrong. Each struct is a ``Command[R]``: ``R``
is its reply (``control.replies``), which the typed clients decode.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar, get_args

import msgspec

from edgeswarm.node.control.replies import (
    AdapterList,
    AdapterRow,
    Clicked,
    FlOverview,
    ItemsAdded,
    MergeOutcome,
    NodeStatus,
    PresenceReport,
    RoundTrip,
    RunRecord,
    RunStarted,
    SearchHit,
    Waited,
)

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Scalar = str | int | float | bool


class BadRequest(ValueError):
    """The request line is not a valid command (the client's fault)."""


R = TypeVar("R")


class Command(msgspec.Struct, Generic[R], frozen=True, forbid_unknown_fields=True, tag_field="cmd"):
    """A control command whose reply is an ``R``."""

    CALL_SECONDS = 60.0
    """How long a client waits for the reply, beyond the command's own ``timeout`` if it has one."""


def reply_type(command: type[Command[Any]]) -> Any:
    """The reply type ``R`` that ``command`` (a ``Command[R]`` subclass) declares."""
    for base in getattr(command, "__orig_bases__", ()):
        if getattr(base, "__origin__", None) is Command:
            return get_args(base)[0]
    raise TypeError(f"{command.__qualname__} declares no reply type")


class Status(Command[NodeStatus], tag="status", frozen=True):
    pass


class Ping(Command[RoundTrip], tag="ping", frozen=True):
    peer: Text
    bytes: Annotated[int, msgspec.Meta(ge=0, le=2 * 1024 * 1024)] = 0
    timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0


PeerList = Annotated[list[Text], msgspec.Meta(max_length=1000)]
CounterName = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[a-z_]+(\.[a-z0-9_.\-]+)?$")]


class Wait(Command[Waited], tag="wait", frozen=True):
    """Block until every condition holds, or ``timeout`` s pass (then the reply says what is unmet).

    ``peer``: connected to it; ``peers``: at least this many connections; ``heard_from``:
    presence heard from at least this many peers; ``known``: each peer in the membership
    view or connected; ``in_view`` / ``not_in_view``: each peer in / out of the view;
    ``disconnected``: no connection to any of them; ``counters``: each counter (``group.label``
    as ``status`` shows it, ``group`` alone for its total, ``transport.<name>`` for the
    transport's) at least this value; ``gossip_peers``: every subscribed topic's gossip
    reaches at least this many peers directly (a publish now gets through).
    """

    peer: Text | None = None
    peers: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 0
    heard_from: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 0
    known: PeerList = []
    in_view: PeerList = []
    not_in_view: PeerList = []
    disconnected: PeerList = []
    counters: Annotated[dict[CounterName, Annotated[int, msgspec.Meta(ge=0)]], msgspec.Meta(max_length=64)] = {}
    gossip_peers: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0
    timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 60.0


class Presence(Command[PresenceReport], tag="presence", frozen=True):
    since: float = float("-inf")


class Search(Command[list[SearchHit]], tag="search", frozen=True):
    query: Text


class Click(Command[Clicked], tag="click", frozen=True):
    item: Name


class CatalogItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    item: Name
    title: Annotated[str, msgspec.Meta(max_length=1024)]
    tags: Annotated[list[Annotated[str, msgspec.Meta(max_length=128)]], msgspec.Meta(max_length=64)] = []


class CatalogAdd(Command[ItemsAdded], tag="catalog_add", frozen=True):
    items: Annotated[list[CatalogItem], msgspec.Meta(max_length=10_000)]


class FlHost(Command[RunStarted], tag="fl_host", frozen=True):
    task: Name
    strategy: Name = "fedavg"
    rounds: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 3
    min_clients: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 2
    max_clients: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None
    join_window: Annotated[float, msgspec.Meta(gt=0)] | None = None
    reply_timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    train_config: Annotated[dict[Name, Scalar], msgspec.Meta(max_length=64)] = {}


class FlJoin(Command[RunRecord], tag="fl_join", frozen=True):
    run_id: Name


class FlStatus(Command[FlOverview], tag="fl_status", frozen=True):
    pass


class FlWait(Command[RunRecord], tag="fl_wait", frozen=True):
    """Block until run ``run_id`` (hosted or joined here) has ended; reply with its record."""

    run_id: Name
    timeout: Annotated[float, msgspec.Meta(gt=0, le=24 * 3600)] = 600.0


class LoraTrain(Command[AdapterRow], tag="lora_train", frozen=True):
    CALL_SECONDS = 600.0


class LoraPublish(Command[AdapterRow], tag="lora_publish", frozen=True):
    digest: Name | None = None


class LoraList(Command[AdapterList], tag="lora_list", frozen=True):
    pass


class LoraPull(Command[AdapterRow], tag="lora_pull", frozen=True):
    CALL_SECONDS = 120.0
    digest: Name


class LoraMerge(Command[MergeOutcome], tag="lora_merge", frozen=True):
    CALL_SECONDS = 600.0
    policy: Name = "validation"
    method: Name = "flora"
    force: bool = False


class LoraUse(Command[AdapterRow], tag="lora_use", frozen=True):
    digest: Name


Request = (
    Status
    | Ping
    | Wait
    | Presence
    | Search
    | Click
    | CatalogAdd
    | FlHost
    | FlJoin
    | FlStatus
    | FlWait
    | LoraTrain
    | LoraPublish
    | LoraList
    | LoraPull
    | LoraMerge
    | LoraUse
)
COMMANDS: tuple[str, ...] = tuple(t.__struct_config__.tag for t in get_args(Request))

_decoder = msgspec.json.Decoder(Request)


def decode_request(line: bytes) -> Request:
    """The typed request in ``line``; raises ``BadRequest`` saying what is wrong."""
    try:
        return _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid request: {exc} (commands: {', '.join(COMMANDS)})") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"request is not JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request is nested too deeply") from None
