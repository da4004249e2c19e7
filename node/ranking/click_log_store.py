"""The ranking service's tables in the node's store: the ``catalog``, the ``click_log`` rows
(signed bytes, by issuer and number) and ``pull_progress`` (what each peer was sent).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from edgeswarm.node.store import Store


class ClickLogStore:
    """Catalog items, click-log rows and gossip pointers, over the node's store connection."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._conn = store.db

    def add_items(self, items: Iterable[tuple[str, str, tuple[str, ...], bool]]) -> None:
        """Upsert ``(item, title, tags, local)``; an item once local stays local."""
        rows = [(i, t, json.dumps(list(tags)), int(local)) for i, t, tags, local in items]
        with self.store.transaction():
            self._conn.executemany(
                "INSERT INTO catalog VALUES (?, ?, ?, ?) ON CONFLICT (item) DO UPDATE SET "
                "title = excluded.title, tags = excluded.tags, local = MAX(local, excluded.local)",
                rows,
            )

    def items(self) -> list[tuple[str, str, tuple[str, ...], bool]]:
        rows = self._conn.execute("SELECT item, title, tags, local FROM catalog ORDER BY item").fetchall()
        return [(i, t, tuple(json.loads(tags)), bool(local)) for i, t, tags, local in rows]

    def add_click_row(self, node: str, number: int, row: bytes, sig: bytes) -> int | None:
        """Append a row; its sequence number, or None if ``(node, number)`` is already here."""
        cursor = self._conn.execute(
            "INSERT OR IGNORE INTO click_log (node, number, row, sig) VALUES (?, ?, ?, ?)", (node, number, row, sig)
        )
        return cursor.lastrowid if cursor.rowcount else None

    def add_click_rows(self, rows: list[tuple[str, int, bytes, bytes]]) -> None:
        """Append ``(node, number, row, sig)`` rows in one transaction; ones already here are skipped."""
        if rows:
            with self.store.transaction():
                self._conn.executemany(
                    "INSERT OR IGNORE INTO click_log (node, number, row, sig) VALUES (?, ?, ?, ?)", rows
                )

    def click_rows_after(self, seq: int, limit: int, max_bytes: int) -> list[tuple[int, bytes, bytes]]:
        """Rows with a sequence number above ``seq``, oldest first, within both bounds."""
        out, size = [], 0
        for row_seq, row, sig in self._conn.execute(
            "SELECT seq, row, sig FROM click_log WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ):
            size += len(row) + len(sig) + 16
            if size > max_bytes:
                break
            out.append((row_seq, row, sig))
        return out

    def iter_click_rows(self, batch: int = 4096) -> Iterator[bytes]:
        """Every stored row's bytes, oldest first, read ``batch`` at a time (never all at once)."""
        last = 0
        while True:
            rows = self._conn.execute(
                "SELECT seq, row FROM click_log WHERE seq > ? ORDER BY seq LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            for _, row in rows:
                yield row

    def click_log_issuers(self) -> list[tuple[str, int, int, int]]:
        """Per issuer, oldest first: ``(node, rows, highest number + 1, bytes of rows and signatures)``."""
        return self._conn.execute(
            "SELECT node, COUNT(*), MAX(number) + 1, SUM(LENGTH(row) + LENGTH(sig)) FROM click_log "
            "GROUP BY node ORDER BY MIN(seq)"
        ).fetchall()

    def click_numbers_of(self, node: str) -> list[int]:
        return [n for (n,) in self._conn.execute("SELECT number FROM click_log WHERE node = ?", (node,))]

    def delete_click_rows_of(self, nodes: Iterable[str]) -> None:
        """Delete every row of the issuers ``nodes`` in one transaction."""
        rows = [(n,) for n in nodes]
        if rows:
            with self.store.transaction():
                self._conn.executemany("DELETE FROM click_log WHERE node = ?", rows)

    def click_rows_of(self, node: str, number: int, limit: int) -> list[tuple[int, bytes, bytes]]:
        """``node``'s rows numbered ``number`` and up, in number order, at most ``limit``."""
        return self._conn.execute(
            "SELECT seq, row, sig FROM click_log WHERE node = ? AND number >= ? ORDER BY number LIMIT ?",
            (node, number, limit),
        ).fetchall()

    def click_row_count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM click_log").fetchone()[0]

    def pull_progress(self, requester: str) -> int:
        row = self._conn.execute("SELECT last_seq FROM pull_progress WHERE requester = ?", (requester,)).fetchone()
        return 0 if row is None else row[0]

    def set_pull_progress(self, requester: str, last_seq: int) -> None:
        self._conn.execute("INSERT OR REPLACE INTO pull_progress VALUES (?, ?)", (requester, last_seq))
