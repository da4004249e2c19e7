"""The adapters service's table in the node's store: LoRA deltas by content hash, with their
safetensors bytes once fetched.
"""

from __future__ import annotations

import msgspec

from edgeswarm.node.store import Store


class AdapterRow(msgspec.Struct, frozen=True):
    """One LoRA delta this node knows of (``origin``: own, peer, merged or announced)."""

    digest: str
    origin: str
    signer: str
    task: str
    rank: int
    size: int
    metric: float
    samples: int
    note: str
    added_at: float
    stored: bool = False


class AdapterStore:
    """Adapter records and bytes, over the node's store connection."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._conn = store.db

    def put_adapter(self, row: AdapterRow, data: bytes | None) -> None:
        """Insert or update an adapter record; data, once stored, is never dropped by an update."""
        self._conn.execute(
            "INSERT INTO adapters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (digest) DO UPDATE SET "
            "origin = CASE WHEN adapters.origin = 'announced' THEN excluded.origin ELSE adapters.origin END, "
            "data = COALESCE(adapters.data, excluded.data), note = excluded.note",
            (
                row.digest,
                row.origin,
                row.signer,
                row.task,
                row.rank,
                row.size,
                row.metric,
                row.samples,
                data,
                row.note,
                row.added_at,
            ),
        )

    def adapters(self, origin: str | None = None) -> list[AdapterRow]:
        query = (
            "SELECT digest, origin, signer, task, rank, size, metric, samples, note, added_at, data IS NOT NULL "
            "FROM adapters" + (" WHERE origin = ?" if origin else "") + " ORDER BY added_at, digest"
        )
        return [
            AdapterRow(digest, origin_, signer, task, rank, size, metric, samples, note, added_at, bool(stored))
            for digest, origin_, signer, task, rank, size, metric, samples, note, added_at, stored in self._conn.execute(
                query, (origin,) if origin else ()
            )
        ]

    def adapter_data(self, digest: str) -> bytes | None:
        row = self._conn.execute("SELECT data FROM adapters WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else row[0]
