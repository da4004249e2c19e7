"""Which peers we still talk to: offences are counted, repeat offenders refused for a while.

Sans-IO: the transports ask it and act (disconnect, refuse); time is passed in.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from .peer_id import PeerId


@dataclass(frozen=True, slots=True)
class PolicyParams:
    """When a peer is refused.

    Parameters
    ----------
    ban_after : int (default: 3)
        Offences within ``window`` seconds that get a peer refused.
    window : float (default: 600.0)
    ban_seconds : float (default: 900.0)
        How long a refused peer stays refused.
    max_tracked : int (default: 4096)
        Peers whose offences are remembered (LRU; bounds memory under a Sybil flood).
    """

    ban_after: int = 3
    window: float = 600.0
    ban_seconds: float = 900.0
    max_tracked: int = 4096


class PeerPolicy:
    def __init__(self, params: PolicyParams | None = None) -> None:
        self.params = params or PolicyParams()
        self._offences: OrderedDict[PeerId, deque[float]] = OrderedDict()
        self._banned_until: OrderedDict[PeerId, float] = OrderedDict()

    def offence(self, peer: PeerId, now: float) -> bool:
        """Record one offence by ``peer``; True when this gets it refused."""
        p = self.params
        times = self._offences.pop(peer, None) or deque(maxlen=p.ban_after)
        times.append(now)
        self._offences[peer] = times
        if len(self._offences) > p.max_tracked:
            self._offences.popitem(last=False)
        if len(times) >= p.ban_after and now - times[0] <= p.window:
            self._banned_until[peer] = now + p.ban_seconds
            self._banned_until.move_to_end(peer)
            if len(self._banned_until) > p.max_tracked:
                self._banned_until.popitem(last=False)
            return True
        return False

    def banned(self, peer: PeerId, now: float) -> bool:
        until = self._banned_until.get(peer)
        if until is None:
            return False
        if now >= until:
            del self._banned_until[peer]
            self._offences.pop(peer, None)
            return False
        return True
