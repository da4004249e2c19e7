"""The membership's tables in the node's store: the view (``peers``) and every peer we learned
how to reach (``known_peers``), so a restarted node rejoins from them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from edgeswarm.node.store import Store


class PeerStore:
    """The view and the known peers, over the node's store connection."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._conn = store.db

    def save_peers(self, peers: Iterable[tuple[str, tuple[str, ...], int]], now: float) -> None:
        """Replace the stored view with ``(peer_id, addrs, age)`` rows in one transaction."""
        rows = [(p, json.dumps(list(addrs)), age, now) for p, addrs, age in peers]
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.execute("DELETE FROM peers")
            self._conn.executemany("INSERT INTO peers VALUES (?, ?, ?, ?)", rows)

    def load_peers(self) -> list[tuple[str, tuple[str, ...], int]]:
        rows = self._conn.execute("SELECT peer_id, addrs, age FROM peers ORDER BY rowid").fetchall()
        return [(p, tuple(json.loads(a)), age) for p, a, age in rows]

    def save_known_peers(self, peers: Iterable[tuple[str, tuple[str, ...], float]], keep: int = 1024) -> None:
        """Upsert ``(peer_id, addrs, last_seen)`` rows; keep the ``keep`` most recently seen."""
        rows = [(p, json.dumps(list(addrs)), seen) for p, addrs, seen in peers]
        if not rows:
            return
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT INTO known_peers VALUES (?, ?, ?) ON CONFLICT (peer_id) DO UPDATE SET "
                "addrs = excluded.addrs, last_seen = MAX(last_seen, excluded.last_seen)",
                rows,
            )
            self._conn.execute(
                "DELETE FROM known_peers WHERE peer_id NOT IN "
                "(SELECT peer_id FROM known_peers ORDER BY last_seen DESC LIMIT ?)",
                (keep,),
            )

    def forget_known_peers(self, peers: Iterable[str]) -> None:
        """Delete known peers (ones that stopped answering)."""
        rows = [(p,) for p in peers]
        if rows:
            with self.store.transaction():
                self._conn.executemany("DELETE FROM known_peers WHERE peer_id = ?", rows)

    def load_known_peers(self, limit: int = 1024) -> list[tuple[str, tuple[str, ...], float]]:
        """Known peers, most recently seen first."""
        rows = self._conn.execute(
            "SELECT peer_id, addrs, last_seen FROM known_peers ORDER BY last_seen DESC, peer_id LIMIT ?", (limit,)
        ).fetchall()
        return [(p, tuple(json.loads(a)), seen) for p, a, seen in rows]
