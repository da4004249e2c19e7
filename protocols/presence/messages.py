"""Wire messages of the presence protocol."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..envelope import Body
from ..membership.messages import MAX_ADDRS, Addr

ServiceName = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class Announce(Body, array_like=True, frozen=True):
    """A node says it is up: its addresses and the services it runs."""

    KIND = "presence.announce"
    MAX_BYTES = 4 * 1024
    addrs: Annotated[tuple[Addr, ...], msgspec.Meta(max_length=MAX_ADDRS)]
    services: Annotated[tuple[ServiceName, ...], msgspec.Meta(max_length=16)]
