"""Wire messages of the ping protocol."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..envelope import Body

MAX_PING_PAYLOAD = 2 * 1024 * 1024


class Ping(Body, array_like=True, frozen=True):
    KIND = "ping.request"
    MAX_BYTES = MAX_PING_PAYLOAD + 64
    payload: Annotated[bytes, msgspec.Meta(max_length=MAX_PING_PAYLOAD)]


class Pong(Body, array_like=True, frozen=True):
    KIND = "ping.reply"
    MAX_BYTES = MAX_PING_PAYLOAD + 64
    payload: Annotated[bytes, msgspec.Meta(max_length=MAX_PING_PAYLOAD)]
