"""Items a node can offer, found by the words of their title and tags; kept in SQLite, not memory.

Descriptions come from the node's catalog and from the click rows of its peers (a row may carry
the clicked item's title and tags). The catalog's description of an item wins; otherwise the
first peer's that described it, so a later row cannot rename an item already known. Every
description is kept with its source, so that when a source's rows are evicted the item falls
back to another one's description instead of vanishing from searches.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from .grank import create, normalise

SCHEMA = """
CREATE TABLE IF NOT EXISTS index_items (
    idx INTEGER PRIMARY KEY,
    item TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS index_items_by_source ON index_items (source);
CREATE TABLE IF NOT EXISTS index_meta (
    item INTEGER NOT NULL,
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    tags TEXT NOT NULL,
    PRIMARY KEY (item, source)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS index_meta_by_source ON index_meta (source);
CREATE TABLE IF NOT EXISTS index_words (word TEXT NOT NULL, item INTEGER NOT NULL, PRIMARY KEY (word, item))
    WITHOUT ROWID;
"""
TABLES = ("index_items", "index_meta", "index_words")

CATALOG = ""  # the source of the node's own catalog entries


def _words(title: str, tags: str) -> set[str]:
    return set(normalise(title)) | set(normalise(json.loads(tags)))


class ItemIndex:
    """Item descriptions and a word index over them, in the tables of ``db``.

    Parameters
    ----------
    db : sqlite3.Connection | None (default: a private in-memory database)
        Shared with the caller's store, so that an index update commits with the rows that
        brought it (the caller opens the transaction). The tables are created if missing.
    """

    def __init__(self, db: sqlite3.Connection | None = None) -> None:
        self._db = db if db is not None else sqlite3.connect(":memory:", isolation_level=None)
        create(self._db, SCHEMA)

    def add(self, item: str, title: str, tags: Iterable[str], source: str = CATALOG) -> None:
        """Describe ``item`` (``source``: the issuer of the row that described it, or the catalog)."""
        db = self._db
        text = json.dumps(list(tags))
        found = db.execute(
            "SELECT i.idx, i.source, m.title, m.tags FROM index_items i "
            "LEFT JOIN index_meta m ON m.item = i.idx AND m.source = ? WHERE i.item = ?",
            (source, item),
        ).fetchone()
        if found is None:
            (idx,) = db.execute(
                "INSERT INTO index_items (item, source) VALUES (?, ?) RETURNING idx", (item, source)
            ).fetchone()
            db.execute("INSERT INTO index_meta VALUES (?, ?, ?, ?)", (idx, source, title, text))
            self._index(idx, set(), _words(title, text))
            return
        idx, chosen, *described = found
        if described == [title, text]:
            return
        old = None if described[0] is None else tuple(described)
        db.execute(
            "INSERT INTO index_meta VALUES (?, ?, ?, ?) ON CONFLICT (item, source) "
            "DO UPDATE SET title = excluded.title, tags = excluded.tags",
            (idx, source, title, text),
        )
        if source == chosen or source == CATALOG:
            before = old if source == chosen else self._chosen_text(idx, chosen)
            self._index(idx, _words(*before) if before else set(), _words(title, text))
            db.execute("UPDATE index_items SET source = ? WHERE idx = ?", (source, idx))

    def add_many(self, entries: Iterable[tuple[str, str, Iterable[str], str]]) -> None:
        """``add`` each ``(item, title, tags, source)``; one lookup skips those already described so."""
        latest = {(item, source): (title, tuple(tags)) for item, title, tags, source in entries}
        if not latest:
            return
        same = {
            (item, source)
            for item, source, title, text in self._db.execute(
                "SELECT i.item, m.source, m.title, m.tags FROM json_each(?) j "
                "JOIN index_items i ON i.item = json_extract(j.value, '$[0]') "
                "JOIN index_meta m ON m.item = i.idx AND m.source = json_extract(j.value, '$[1]')",
                (json.dumps(list(latest)),),
            )
            if latest[(item, source)] == (title, tuple(json.loads(text)))
        }
        for (item, source), (title, tags) in latest.items():
            if (item, source) not in same:
                self.add(item, title, tags, source)

    def forget(self, sources: Iterable[str]) -> None:
        """Drop every description from ``sources``; their items fall back to another one's, if any."""
        db = self._db
        for source in sources:
            for idx, title, text in db.execute(
                "SELECT i.idx, m.title, m.tags FROM index_items i JOIN index_meta m "
                "ON m.item = i.idx AND m.source = i.source WHERE i.source = ?",
                (source,),
            ).fetchall():
                other = db.execute(
                    "SELECT source, title, tags FROM index_meta WHERE item = ? AND source != ? ORDER BY source LIMIT 1",
                    (idx, source),
                ).fetchone()
                self._index(idx, _words(title, text), set() if other is None else _words(other[1], other[2]))
                if other is None:
                    db.execute("DELETE FROM index_items WHERE idx = ?", (idx,))
                else:
                    db.execute("UPDATE index_items SET source = ? WHERE idx = ?", (other[0], idx))
            db.execute("DELETE FROM index_meta WHERE source = ?", (source,))

    def meta(self, item: str) -> tuple[str, tuple[str, ...]] | None:
        """``item``'s title and tags, or None if nobody described it."""
        found = self._db.execute(
            "SELECT m.title, m.tags FROM index_items i JOIN index_meta m ON m.item = i.idx AND m.source = i.source "
            "WHERE i.item = ?",
            (item,),
        ).fetchone()
        return None if found is None else (found[0], tuple(json.loads(found[1])))

    def metas(self, items: Iterable[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
        """``meta`` of each of ``items`` that somebody described, in one query."""
        rows = self._db.execute(
            "SELECT i.item, m.title, m.tags FROM json_each(?) j JOIN index_items i ON i.item = j.value "
            "JOIN index_meta m ON m.item = i.idx AND m.source = i.source",
            (json.dumps(list(items)),),
        )
        return {item: (title, tuple(json.loads(tags))) for item, title, tags in rows}

    def __contains__(self, item: object) -> bool:
        return self._db.execute("SELECT 1 FROM index_items WHERE item = ?", (item,)).fetchone() is not None

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM index_items").fetchone()[0]

    def matches(self, query: str | Iterable[str]) -> set[str]:
        """Items whose description holds every query term."""
        terms = normalise(query)
        if not terms:
            return set()
        marks = ", ".join("?" * len(terms))
        rows = self._db.execute(
            f"SELECT i.item FROM index_words w JOIN index_items i ON i.idx = w.item WHERE w.word IN ({marks}) "
            "GROUP BY w.item HAVING COUNT(*) = ?",
            (*terms, len(terms)),
        )
        return {item for (item,) in rows}

    def _chosen_text(self, idx: int, source: str) -> tuple[str, str] | None:
        return self._db.execute(
            "SELECT title, tags FROM index_meta WHERE item = ? AND source = ?", (idx, source)
        ).fetchone()

    def _index(self, idx: int, before: set[str], after: set[str]) -> None:
        self._db.executemany("DELETE FROM index_words WHERE word = ? AND item = ?", [(w, idx) for w in before - after])
        self._db.executemany("INSERT INTO index_words VALUES (?, ?)", [(w, idx) for w in after - before])
