"""One SQLite file per node (WAL): everything a node must keep across restarts.

Tables: ``meta`` (sequence numbers, the node's PeerID), ``peers`` (the membership view),
``known_peers`` (every peer we learned how to reach), ``metrics_snapshots``, ``catalog``
and ``click_log`` (ranking), ``pull_progress`` (gossip pointers per peer), ``adapters``
(LoRA deltas by content hash, with their safetensors bytes once fetched) and ``fl_runs``
(the records of federated runs hosted or joined).

Schema changes are numbered migrations applied in order inside a transaction and recorded
in ``PRAGMA user_version``; later services append to ``MIGRATIONS``. Every write is its own
transaction, so a crash (or ``kill -9``) leaves the last committed state, never half a write.
Calls are short and synchronous: they never hold the event loop for long.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

MIGRATIONS: list[str] = [
    # 1: the skeleton: key/value meta, the membership view, metrics snapshots
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE peers (
        peer_id TEXT PRIMARY KEY,
        addrs TEXT NOT NULL,
        age INTEGER NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE metrics_snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        counters TEXT NOT NULL
    );
    """,
    # 2: every peer we learned how to reach, so a restarted node rejoins without bootstrap
    """
    CREATE TABLE known_peers (
        peer_id TEXT PRIMARY KEY,
        addrs TEXT NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE INDEX known_peers_by_last_seen ON known_peers (last_seen);
    """,
    # 3: G-Rank: the item catalog, the click log (signed rows) and per-requester pull progress
    """
    CREATE TABLE catalog (
        item TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        tags TEXT NOT NULL,
        local INTEGER NOT NULL
    );
    CREATE TABLE click_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        node TEXT NOT NULL,
        number INTEGER NOT NULL,
        row BLOB NOT NULL,
        sig BLOB NOT NULL,
        UNIQUE (node, number)
    );
    CREATE TABLE pull_progress (requester TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
    """,
    # 4: LoRA deltas by content hash: our own, fetched from peers, merged; announced ones without data
    """
    CREATE TABLE adapters (
        digest TEXT PRIMARY KEY,
        origin TEXT NOT NULL,
        signer TEXT NOT NULL,
        task TEXT NOT NULL,
        rank INTEGER NOT NULL,
        size INTEGER NOT NULL,
        metric REAL NOT NULL,
        samples INTEGER NOT NULL,
        data BLOB,
        note TEXT NOT NULL DEFAULT '',
        added_at REAL NOT NULL
    );
    CREATE INDEX adapters_by_origin ON adapters (origin, added_at);
    """,
    # 5: federated runs hosted or joined (msgpack RunRecords), newest update last, so
    # `fl status` outlives a restart
    """
    CREATE TABLE fl_runs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        round_id TEXT NOT NULL UNIQUE,
        record BLOB NOT NULL
    );
    """,
    # 6: G-Rank's counts and the item index move from memory into tables the ranking service
    # creates (learning.grank, learning.item_index); it folds the rows already here once
    """
    INSERT INTO meta (key, value) VALUES ('ranking_fold', 'all rows');
    """,
    # 7: a run's id was called a round id; the column says what it identifies
    """
    ALTER TABLE fl_runs RENAME COLUMN round_id TO run_id;
    """,
]

STORE_FILE = "node.sqlite"


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


class StoreError(Exception):
    """The store cannot be opened or is from an incompatible version."""


def _private(path: Path) -> None:
    """Make the store's files 0600 (stores made by older versions may be wider)."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and stat.S_IMODE(file.stat().st_mode) & 0o077:
            os.chmod(file, 0o600)


def recorded_peer_id(path: Path) -> str | None:
    """The PeerID the store at ``path`` belongs to, read without changing it (None if none)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'peer_id'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return None if row is None else row[0]


class Store:
    """A node's SQLite store. ``Store.open(":memory:")`` gives a throwaway one."""

    def __init__(self, conn: sqlite3.Connection, location: str) -> None:
        self._conn = conn
        self.location = location

    @classmethod
    def open(cls, path: Path | str) -> Store:
        location = str(path)
        try:
            if location != ":memory:":
                Path(location).parent.mkdir(parents=True, exist_ok=True)
            old_umask = os.umask(0o077)  # the store and its WAL files: readable by this user only
            try:
                conn = sqlite3.connect(location, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
            finally:
                os.umask(old_umask)
            if location != ":memory:":
                _private(Path(location))
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            store = cls(conn, location)
            store._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open store '{location}': {exc}") from None
        return store

    @property
    def db(self) -> sqlite3.Connection:
        """The connection itself, for tables a layer below keeps in this file (G-Rank's counts)."""
        return self._conn

    @property
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise StoreError(
                f"store '{self.location}' has schema version {current}, newer than this "
                f"edgeswarm knows ({len(MIGRATIONS)}); upgrade edgeswarm"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {version}")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several writes into one commit (all or nothing); inside another, part of it."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- meta ----------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        self._conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    # -- peers ---------------------------------------------------------------------------
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
            with self.transaction():
                self._conn.executemany("DELETE FROM known_peers WHERE peer_id = ?", rows)

    def load_known_peers(self, limit: int = 1024) -> list[tuple[str, tuple[str, ...], float]]:
        """Known peers, most recently seen first."""
        rows = self._conn.execute(
            "SELECT peer_id, addrs, last_seen FROM known_peers ORDER BY last_seen DESC, peer_id LIMIT ?", (limit,)
        ).fetchall()
        return [(p, tuple(json.loads(a)), seen) for p, a, seen in rows]

    # -- ranking -------------------------------------------------------------------------
    def add_items(self, items: Iterable[tuple[str, str, tuple[str, ...], bool]]) -> None:
        """Upsert ``(item, title, tags, local)``; an item once local stays local."""
        rows = [(i, t, json.dumps(list(tags)), int(local)) for i, t, tags, local in items]
        with self.transaction():
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
            with self.transaction():
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
            with self.transaction():
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

    # -- metrics -------------------------------------------------------------------------
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

    def put_fl_run(self, run_id: str, record: bytes, keep: int) -> None:
        """Insert or replace a run's record as the newest; keep the newest ``keep`` runs."""
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.execute("INSERT OR REPLACE INTO fl_runs (run_id, record) VALUES (?, ?)", (run_id, record))
            self._conn.execute("DELETE FROM fl_runs WHERE seq <= (SELECT MAX(seq) FROM fl_runs) - ?", (keep,))

    def fl_runs(self) -> list[bytes]:
        """Every kept run record, least recently updated first."""
        return [r[0] for r in self._conn.execute("SELECT record FROM fl_runs ORDER BY seq")]

    def save_metrics(self, now: float, counters: dict[str, dict[str, int]], keep: int = 100) -> None:
        """Append a counters snapshot, keeping the newest ``keep``."""
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.execute(
                "INSERT INTO metrics_snapshots (ts, counters) VALUES (?, ?)",
                (now, msgspec.json.encode(counters).decode()),
            )
            self._conn.execute(
                "DELETE FROM metrics_snapshots WHERE id <= (SELECT MAX(id) FROM metrics_snapshots) - ?",
                (keep,),
            )

    def latest_metrics(self) -> tuple[float, dict[str, dict[str, int]]] | None:
        row = self._conn.execute("SELECT ts, counters FROM metrics_snapshots ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else (row[0], json.loads(row[1]))


class SequenceNumbers:
    """Strictly increasing envelope sequence numbers that survive restarts and crashes.

    Numbers are reserved from the store in blocks; after a restart counting resumes above
    the last reservation, so peers never see a number twice (which they would drop as a
    replay). Gaps after a crash are harmless.
    """

    _KEY = "seq_reserved"

    def __init__(self, store: Store, block: int = 1024) -> None:
        self._store = store
        self._block = block
        reserved = store.get_meta(self._KEY)
        self._next = int(reserved) if reserved is not None else 0
        self._reserved = self._next

    def __call__(self) -> int:
        if self._next >= self._reserved:
            self._reserved = self._next + self._block
            self._store.set_meta(self._KEY, str(self._reserved))
        value = self._next
        self._next += 1
        return value
