"""Sans-IO bounds on what peers can make a node hold, in the spirit of go-libp2p's resource manager.

Three small accountants, each with time passed in and nothing but counting inside:

- ``RateLimiter``: token buckets per key (peer, origin, issuer), with a bounded number of
  keys, so that a flood of fresh identities cannot grow memory either.
- ``SlotLimiter``: slots held at once, in total and per key (connections per IP, inbound
  streams); the caller releases what it took.
- ``ByteBudget``: bytes held at once, in total and per key (large request frames being read).

``TransportLimits`` gathers the bounds the libp2p transport applies with them.
Transports and services ask them and act (refuse, reset, drop); what they refuse the
callers count, so every rejection is visible in ``status``.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` tokens a second, up to ``burst`` saved."""

    per_second: float
    burst: float


class RateLimiter:
    """Token buckets by key; the ``max_keys`` least recently used are kept.

    A key that was dropped for room comes back with a full bucket. That favours a flood of
    fresh identities only if more than ``max_keys`` of them are active at once, and the
    callers add a global bucket (key ``None``) for that case.
    """

    def __init__(self, rate: Rate, *, max_keys: int = 4096) -> None:
        if rate.per_second < 0 or rate.burst < 1:
            raise ValueError(f"a rate needs per_second >= 0 and burst >= 1, not {rate}")
        self.rate = rate
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def available(self, key: Hashable, now: float) -> float:
        """Tokens ``key`` could spend now."""
        tokens, then = self._buckets.get(key, (self.rate.burst, now))
        return min(self.rate.burst, tokens + max(0.0, now - then) * self.rate.per_second)

    def take(self, key: Hashable, now: float, amount: float = 1.0) -> bool:
        """Spend ``amount`` tokens of ``key``; False (and nothing spent) if it has fewer."""
        tokens = self.available(key, now)
        ok = tokens >= amount
        self._buckets[key] = (tokens - amount if ok else tokens, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return ok

    def take_up_to(self, key: Hashable, now: float, wanted: int) -> int:
        """Spend as many whole tokens as ``key`` has, at most ``wanted``; return how many."""
        granted = min(wanted, int(self.available(key, now)))
        if granted:
            self.take(key, now, granted)
        return granted


class SlotLimiter:
    """At most ``total`` slots held at once, and at most ``per_key`` by any one key.

    When ``total`` is reached, a key that holds no slot may still take one of ``reserve``
    more: so many keys that each hold several cannot shut out one that holds none (the
    fair share go-libp2p's resource manager keeps per peer). Keys are bounded elsewhere
    (connections), which bounds what the reserve can give away.
    """

    def __init__(self, total: int, per_key: int, reserve: int = 0) -> None:
        self.total = total
        self.per_key = per_key
        self.reserve = reserve
        self._held: defaultdict[Hashable, int] = defaultdict(int)
        self._count = 0

    @property
    def held(self) -> int:
        return self._count

    def held_by(self, key: Hashable) -> int:
        return self._held.get(key, 0)

    def acquire(self, key: Hashable) -> str | None:
        """Take a slot for ``key``; None on success, else which bound said no ("total", "per_key")."""
        if self._count >= self.total and (self._held.get(key) or self._count >= self.total + self.reserve):
            return "total"
        if self._held[key] >= self.per_key:
            if not self._held[key]:
                del self._held[key]
            return "per_key"
        self._held[key] += 1
        self._count += 1
        return None

    def release(self, key: Hashable) -> None:
        held = self._held.get(key, 0)
        if held <= 0:
            raise RuntimeError(f"release of a slot {key!r} does not hold")
        self._count -= 1
        if held == 1:
            del self._held[key]
        else:
            self._held[key] = held - 1


class ByteBudget:
    """At most ``total`` bytes reserved at once over every holder, and ``per_key`` by one."""

    def __init__(self, total: int, per_key: int) -> None:
        self.total = total
        self.per_key = per_key
        self.reserved = 0
        self._by_key: defaultdict[Hashable, int] = defaultdict(int)

    def reserve(self, key: Hashable, size: int) -> str | None:
        """Reserve ``size`` bytes for ``key``; None on success, else which bound said no."""
        if size < 0:
            raise ValueError("a reservation is never negative")
        if self.reserved + size > self.total:
            return "total"
        if self._by_key.get(key, 0) + size > self.per_key:
            return "per_key"
        self.reserved += size
        self._by_key[key] += size
        return None

    def release(self, key: Hashable, size: int) -> None:
        held = self._by_key.get(key, 0)
        if size > held:
            raise RuntimeError(f"release of {size} bytes, {held} reserved by {key!r}")
        self.reserved -= size
        if held == size:
            del self._by_key[key]
        else:
            self._by_key[key] = held - size


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Bounds on what one peer can make us do.

    Parameters
    ----------
    streams_per_peer : int (default: 16)
        Inbound requests served at once per peer; more are reset (and counted).
    read_timeout : float (default: 30.0)
        Seconds an inbound request may take to arrive whole.
    gossip_degree : int (default: 6)
        GossipSub mesh degree D (D_low = 4, D_high = 12).
    eclipse_protection : bool (default: True)
        GossipSub keeps mesh peers from at least 3 distinct IPs. Right on the internet;
        on loopback (every peer at 127.0.0.1) it starves the mesh and gossip falls back
        to 1 s heartbeats, so local swarms turn it off.
    inbound_connections : int (default: 256)
        Inbound connections held at once, handshaking or established; more are closed
        before the handshake.
    connections_per_ip : int (default: 32)
        Inbound connections held at once from one IP address (a fair share: one host
        cannot take every slot).
    handshake_timeout : float (default: 5.0)
        Seconds an inbound connection may take to finish Noise and yamux.
    inbound_streams : int (default: 256)
        Inbound requests served at once over all peers; past it, a peer with none in
        progress still gets one (up to ``inbound_connections`` more), so peers that each
        hold many cannot shut out one that holds none.
    inflight_request_bytes : int (default: 64 MiB)
        Bytes of large requests (over 64 KiB) being read or served at once over all peers;
        a request that does not fit is reset before its body is read. Small requests
        always fit (``inbound_streams`` bounds them), so a flood of large ones cannot
        starve small ones such as pings and shuffles.
    inflight_request_bytes_per_peer : int (default: 16 MiB)
        The same, for one peer.
    gossip_per_origin : Rate (default: 10/s, burst 50)
        Validly signed gossip messages accepted per origin; the rest are neither delivered
        nor forwarded.
    """

    streams_per_peer: int = 16
    read_timeout: float = 30.0
    gossip_degree: int = 6
    eclipse_protection: bool = True
    inbound_connections: int = 256
    connections_per_ip: int = 32
    handshake_timeout: float = 5.0
    inbound_streams: int = 256
    inflight_request_bytes: int = 64 * 1024 * 1024
    inflight_request_bytes_per_peer: int = 16 * 1024 * 1024
    gossip_per_origin: Rate = Rate(10.0, 50.0)
