"""One SQLite file per node (WAL): everything a node must keep across restarts.

This module owns the connection, the schema and the node's own tables: ``meta`` (sequence
numbers, the node's PeerID) and ``metrics_snapshots``. Each service reads and writes its
tables through a repository of its own over the same connection: ``swarm.peer_store``
(``peers``, ``known_peers``), ``ranking.click_log_store`` (``catalog``, ``click_log``,
``pull_progress``), ``adapters.adapter_store`` (``adapters``) and ``fl.run_records``
(``fl_runs``). One connection, so one service's writes can share a transaction with
another layer's tables (G-Rank's counts commit with the rows that change them).

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
from collections.abc import Iterator
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

    # -- metrics -------------------------------------------------------------------------
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
