"""What the control socket accepts: one typed struct per command, decoded once.

A request line is JSON such as ``{"cmd": "ping", "peer": "12D3...", "bytes": 1024}``; the
``cmd`` field picks the struct. Decoding checks every field's type and bounds, so the
command handlers in ``control`` only ever see valid requests; anything else becomes a
``BadRequest`` with a message that says what is wrong.
"""

from __future__ import annotations

from typing import Annotated, Union

import msgspec

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Scalar = Union[str, int, float, bool]


class BadRequest(ValueError):
    """The request line is not a valid command (the client's fault)."""


class _Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="cmd"):
    pass


class Status(_Request, tag="status"):
    pass


class Ping(_Request, tag="ping"):
    peer: Text
    bytes: Annotated[int, msgspec.Meta(ge=0, le=2 * 1024 * 1024)] = 0
    timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0


class Wait(_Request, tag="wait"):
    """Block until every condition holds (connected to ``peer``, at least ``peers``
    connections, presence heard from at least ``heard_from`` peers), or ``timeout`` s pass."""

    peer: Text | None = None
    peers: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 0
    heard_from: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 0
    timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 60.0


class Presence(_Request, tag="presence"):
    since: float = float("-inf")


class Search(_Request, tag="search"):
    query: Text


class Click(_Request, tag="click"):
    item: Name


class CatalogItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    item: Name
    title: Annotated[str, msgspec.Meta(max_length=1024)]
    tags: Annotated[list[Annotated[str, msgspec.Meta(max_length=128)]], msgspec.Meta(max_length=64)] = []


class CatalogAdd(_Request, tag="catalog_add"):
    items: Annotated[list[CatalogItem], msgspec.Meta(max_length=10_000)]


class FlHost(_Request, tag="fl_host"):
    task: Name
    strategy: Name = "fedavg"
    rounds: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 3
    min_clients: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 2
    join_window: Annotated[float, msgspec.Meta(gt=0)] | None = None
    reply_timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    train_config: Annotated[dict[Name, Scalar], msgspec.Meta(max_length=64)] = {}


class FlJoin(_Request, tag="fl_join"):
    round_id: Name


class FlStatus(_Request, tag="fl_status"):
    pass


class LoraTrain(_Request, tag="lora_train"):
    pass


class LoraPublish(_Request, tag="lora_publish"):
    digest: Name | None = None


class LoraList(_Request, tag="lora_list"):
    pass


class LoraPull(_Request, tag="lora_pull"):
    digest: Name


class LoraMerge(_Request, tag="lora_merge"):
    policy: Name = "validation"
    method: Name = "flora"
    force: bool = False


class LoraUse(_Request, tag="lora_use"):
    digest: Name


Request = Union[Status, Ping, Wait, Presence, Search, Click, CatalogAdd, FlHost, FlJoin, FlStatus, LoraTrain,
                LoraPublish, LoraList, LoraPull, LoraMerge, LoraUse]
COMMANDS: tuple[str, ...] = tuple(t.__struct_config__.tag for t in Request.__args__)

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
