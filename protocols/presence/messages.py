"""Wire messages of the presence protocol."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..envelope import Body
from ..membership.messages import MAX_ADDRS, Addr

ServiceName = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class Announce(Body, array_like=True, frozen=True):
    """A node says it is up: its addresses and the services it runs.

    ``number`` counts the node's announcements since it started (``session`` tells one
    start from the next), so a receiver can tell from a gap how many it missed: gossip
    loss, measured where it happens.
    """

    KIND = "presence.announce"
    MAX_BYTES = 4 * 1024
    session: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    number: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    addrs: Annotated[tuple[Addr, ...], msgspec.Meta(max_length=MAX_ADDRS)]
    services: Annotated[tuple[ServiceName, ...], msgspec.Meta(max_length=16)]
