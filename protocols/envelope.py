"""Signed, typed, size-bounded envelopes: where every message is encoded and decoded.

Wire format: a msgpack array ``[kind, sender, seq, ts, body, sig]`` where ``body`` is the
msgpack of a typed ``Body`` struct, ``sender`` the raw Ed25519 public key and ``sig`` an
Ed25519 signature over a domain tag plus ``[kind, sender, seq, ts, body]``.

Decoding (``Codec.open``) checks, cheapest first: total size, envelope shape, known kind,
the kind's body-size limit, freshness of ``ts``, the signature, replay of ``seq``, and only
then decodes the body into its type. Each failure raises ``Rejected`` with one reason.
"""

from __future__ import annotations

import enum
import functools
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, ClassVar, Generic, Protocol, TypeVar

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .network import LocalProtocolError
from .peer_id import ED25519_KEY_BYTES, PeerId, peer_id_from_public_key

MAX_ENVELOPE_BYTES = 4 * 1024 * 1024
MAX_KIND_CHARS = 64
SIGNATURE_BYTES = 64
ENVELOPE_OVERHEAD = 256
"""Bytes an envelope adds around its body (kind, sender, seq, ts, sig, msgpack headers)."""
_SIGNING_DOMAIN = b"edgeswarm/envelope/v1\x00"


class Body(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of every typed message.

    Subclasses set ``KIND`` (unique wire name, e.g. ``"membership.shuffle"``) and
    ``MAX_BYTES`` (largest encoded body accepted; checked before decoding).
    """

    KIND: ClassVar[str]
    MAX_BYTES: ClassVar[int]


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KIND_CHARS)]
    sender: Annotated[bytes, msgspec.Meta(min_length=ED25519_KEY_BYTES, max_length=ED25519_KEY_BYTES)]
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    ts: float
    body: bytes
    sig: Annotated[bytes, msgspec.Meta(min_length=SIGNATURE_BYTES, max_length=SIGNATURE_BYTES)]


class RejectReason(enum.StrEnum):
    OVERSIZE = "oversize"
    MALFORMED = "malformed"
    UNKNOWN_KIND = "unknown_kind"
    STALE = "stale"
    BAD_SIGNATURE = "bad_signature"
    REPLAY = "replay"
    WRONG_SENDER = "wrong_sender"


PENALIZED = frozenset(
    {RejectReason.OVERSIZE, RejectReason.MALFORMED, RejectReason.BAD_SIGNATURE, RejectReason.WRONG_SENDER}
)
"""Reasons that only a faulty or hostile peer produces; stale, replayed or unknown-kind
envelopes can come from clock skew, reordering or a newer version and are only counted."""


class Rejected(Exception):
    """A peer sent bytes we refuse; the peer's fault, never ours. Count it and drop it."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RegistrationError(LocalProtocolError):
    """A message kind registered twice, handled twice, or used unregistered: our bug, caught at start."""


class Signer(Protocol):
    @property
    def public_key(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


B = TypeVar("B", bound=Body)


@dataclass(frozen=True, slots=True)
class Opened(Generic[B]):
    """A verified envelope: who signed it, when, and its decoded body."""

    sender: PeerId
    seq: int
    ts: float
    body: B


@dataclass(frozen=True, slots=True)
class Freshness:
    """How far an envelope's ``ts`` may lie behind (``max_age``) or ahead (``max_skew``)."""

    max_age: float = 600.0
    max_skew: float = 120.0


class ReplayWindow:
    """Per-sender anti-replay window (as in IPsec, RFC 4303 section 3.4.3).

    A sender's seq is accepted once: either above the highest seen, or within ``width``
    below it and not seen before (gossip may reorder a sender's messages). Senders are kept
    in LRU order up to ``max_senders``; ``Freshness`` bounds what an evicted sender's old
    envelopes could still replay.
    """

    def __init__(self, width: int = 64, max_senders: int = 65536) -> None:
        self.width = width
        self.max_senders = max_senders
        self._state: OrderedDict[bytes, tuple[int, int]] = OrderedDict()

    def check(self, sender: bytes, seq: int) -> bool:
        state = self._state.get(sender)
        if state is None:
            return True
        high, mask = state
        if seq > high:
            return True
        offset = high - seq
        return offset < self.width and not (mask >> offset) & 1

    def record(self, sender: bytes, seq: int) -> None:
        state = self._state.get(sender)
        if state is None:
            high, mask = seq, 1
        else:
            high, mask = state
            if seq > high:
                mask = ((mask << (seq - high)) | 1) & ((1 << self.width) - 1)
                high = seq
            else:
                mask |= 1 << (high - seq)
        self._state[sender] = (high, mask)
        self._state.move_to_end(sender)
        if len(self._state) > self.max_senders:
            self._state.popitem(last=False)


@functools.lru_cache(maxsize=8192)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def _signed_bytes(kind: str, sender: bytes, seq: int, ts: float, body: bytes) -> bytes:
    return _SIGNING_DOMAIN + msgspec.msgpack.encode((kind, sender, seq, ts, body))


class Codec:
    """Seals our bodies into signed envelopes and opens (validates) peers' envelopes.

    Parameters
    ----------
    signer : Signer
        Our identity; its public key is the ``sender`` of everything we seal.
    next_seq : callable
        Returns a strictly increasing sequence number, also across restarts.
    now : callable
        Current time in seconds since the epoch (virtual in the simulator).
    freshness : Freshness (default: Freshness())
    replay : ReplayWindow (default: ReplayWindow())
    """

    def __init__(
        self,
        signer: Signer,
        *,
        next_seq: Callable[[], int],
        now: Callable[[], float],
        freshness: Freshness | None = None,
        replay: ReplayWindow | None = None,
    ) -> None:
        self._signer = signer
        self._next_seq = next_seq
        self._now = now
        self._freshness = freshness or Freshness()
        self._replay = replay or ReplayWindow()
        self._types: dict[str, type[Body]] = {}
        self._decoders: dict[str, msgspec.msgpack.Decoder] = {}
        self._encoder = msgspec.msgpack.Encoder()
        self._envelope_decoder = msgspec.msgpack.Decoder(Envelope)

    def register(self, *types: type[Body]) -> None:
        """Make ``types`` known on the wire; a kind may be registered once."""
        for body_type in types:
            kind = body_type.KIND
            if not 0 < len(kind) <= MAX_KIND_CHARS:
                raise ValueError(f"kind {kind!r} must have 1 to {MAX_KIND_CHARS} characters")
            if not 0 < body_type.MAX_BYTES <= MAX_ENVELOPE_BYTES:
                raise ValueError(f"{body_type.__name__}.MAX_BYTES must be in (0, {MAX_ENVELOPE_BYTES}]")
            if kind in self._types:
                raise RegistrationError(
                    f"kind {kind!r} of {body_type.__qualname__} is already registered "
                    f"by {self._types[kind].__qualname__}"
                )
            self._types[kind] = body_type
            self._decoders[kind] = msgspec.msgpack.Decoder(body_type)

    @staticmethod
    def max_envelope_bytes(body_type: type[Body]) -> int:
        """The largest envelope that can carry a valid ``body_type``."""
        return body_type.MAX_BYTES + ENVELOPE_OVERHEAD

    def knows(self, body_type: type[Body]) -> bool:
        return self._types.get(body_type.KIND) is body_type

    def seal(self, body: Body) -> bytes:
        """Encode and sign ``body``; raises ``ValueError`` if it breaks its own limits."""
        kind = body.KIND
        if self._types.get(kind) is not type(body):
            raise RegistrationError(f"{type(body).__qualname__} (kind {kind!r}) is not registered")
        payload = self._encoder.encode(body)
        if len(payload) > body.MAX_BYTES:
            raise ValueError(f"{kind} body is {len(payload)} bytes, its limit is {body.MAX_BYTES}")
        sender = self._signer.public_key
        seq = self._next_seq()
        ts = self._now()
        sig = self._signer.sign(_signed_bytes(kind, sender, seq, ts, payload))
        return self._encoder.encode(Envelope(kind, sender, seq, ts, payload, sig))

    def open(self, data: bytes, expect: type[B] | None = None) -> Opened[B]:
        """Validate ``data`` and decode its body; raise ``Rejected`` with the first failure.

        ``expect`` restricts the accepted body type (e.g. the response to our request).
        """
        if len(data) > MAX_ENVELOPE_BYTES:
            raise Rejected(RejectReason.OVERSIZE, f"envelope of {len(data)} bytes")
        try:
            env = self._envelope_decoder.decode(data)
        except (msgspec.DecodeError, ValueError) as exc:  # ValueError: e.g. invalid UTF-8
            raise Rejected(RejectReason.MALFORMED, f"envelope: {exc}") from None
        body_type = self._types.get(env.kind)
        if body_type is None:
            raise Rejected(RejectReason.UNKNOWN_KIND, f"kind {env.kind!r}")
        if expect is not None and body_type is not expect:
            raise Rejected(RejectReason.MALFORMED, f"expected {expect.KIND!r}, got {env.kind!r}")
        if len(env.body) > body_type.MAX_BYTES:
            raise Rejected(RejectReason.OVERSIZE, f"{env.kind} body of {len(env.body)} bytes > {body_type.MAX_BYTES}")
        now = self._now()
        if not (math.isfinite(env.ts) and now - self._freshness.max_age <= env.ts <= now + self._freshness.max_skew):
            raise Rejected(RejectReason.STALE, f"ts {env.ts!r} outside the window around {now:.3f}")
        try:
            key = _public_key(env.sender)
            key.verify(env.sig, _signed_bytes(env.kind, env.sender, env.seq, env.ts, env.body))
        except (InvalidSignature, ValueError):
            raise Rejected(RejectReason.BAD_SIGNATURE, f"{env.kind} seq {env.seq}") from None
        if not self._replay.check(env.sender, env.seq):
            raise Rejected(RejectReason.REPLAY, f"{env.kind} seq {env.seq}")
        try:
            body = self._decoders[env.kind].decode(env.body)
        except (msgspec.DecodeError, ValueError) as exc:
            raise Rejected(RejectReason.MALFORMED, f"{env.kind} body: {exc}") from None
        self._replay.record(env.sender, env.seq)
        return Opened(peer_id_from_public_key(env.sender), env.seq, env.ts, body)
