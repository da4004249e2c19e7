"""The wire type of the adapter exchange: a small signed announcement on gossip.

The announcer (the envelope's signer) offers the delta's bytes as a public blob; the
announcement's SHA-256 and size bind those bytes to the signature, so a fetched delta is
verified before anything parses it.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from edgeswarm.protocols.blobs import BlobRef
from edgeswarm.protocols.envelope import Body

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class AdapterAnnounce(Body, array_like=True, frozen=True):
    KIND = "lora.announce"
    MAX_BYTES = 1024
    blob: BlobRef
    base_id: Name
    base_version: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    rank: Annotated[int, msgspec.Meta(ge=1, le=4096)]
    task: Name
    metric: Annotated[float, msgspec.Meta(ge=0, le=1)]  # the announcer's local validation accuracy
    samples: Annotated[int, msgspec.Meta(ge=0, le=1 << 40)]  # its training examples (a merge weight)
