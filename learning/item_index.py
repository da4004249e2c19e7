"""Items a node can offer, found by the words of their title and tags; kept in SQLite, not memory.

Descriptions come from the node's catalog and from the click rows of its peers (a row may carry
the clicked item's title and tags). The catalog's description of an item wins; otherwise the
first peer's that described it, so a later row cannot rename an item already known. When a
peer's rows are evicted, the items only it described leave the index until another row
describes them.
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
    source TEXT NOT NULL,
    title TEXT NOT NULL,
    tags TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS index_items_by_source ON index_items (source);
CREATE TABLE IF NOT EXISTS index_words (word TEXT NOT NULL, item INTEGER NOT NULL, PRIMARY KEY (word, item))
    WITHOUT ROWID;
"""
TABLES = ("index_items", "index_words")

CATALOG = ""  # the source of the node's own catalog entries


def _words(title: str, tags: Iterable[str]) -> set[str]:
    return set(normalise(title)) | set(normalise(tags))


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
        tags = tuple(tags)
        found = self._db.execute("SELECT idx, source, title, tags FROM index_items WHERE item = ?", (item,)).fetchone()
        if found is None:
            (idx,) = self._db.execute(
                "INSERT INTO index_items (item, source, title, tags) VALUES (?, ?, ?, ?) RETURNING idx",
                (item, source, title, json.dumps(tags)),
            ).fetchone()
            self._index(idx, set(), _words(title, tags))
            return
        idx, old_source, old_title, old_tags = found
        if source != CATALOG and old_source != source:
            return  # described already: the first description stays
        old = (old_title, tuple(json.loads(old_tags)))
        if old == (title, tags) and old_source == source:
            return
        self._db.execute(
            "UPDATE index_items SET source = ?, title = ?, tags = ? WHERE idx = ?",
            (source, title, json.dumps(tags), idx),
        )
        self._index(idx, _words(*old), _words(title, tags))

    def add_many(self, entries: Iterable[tuple[str, str, Iterable[str], str]]) -> None:
        """``add`` each ``(item, title, tags, source)``; one lookup skips the items already described."""
        fresh = {(item, source): (title, tags) for item, title, tags, source in entries}
        if not fresh:
            return
        described = {
            item
            for (item,) in self._db.execute(
                "SELECT i.item FROM json_each(?) j JOIN index_items i ON i.item = j.value",
                (json.dumps([item for item, source in fresh if source != CATALOG]),),
            )
        }
        for (item, source), (title, tags) in fresh.items():
            if item not in described:
                self.add(item, title, tags, source)
                described.add(item)

    def forget(self, sources: Iterable[str]) -> None:
        """Drop every description from ``sources`` (never the catalog's), in a few statements."""
        batch = (json.dumps([s for s in dict.fromkeys(sources) if s != CATALOG]),)
        theirs = "SELECT value FROM json_each(?)"
        rows = self._db.execute(f"SELECT idx, title, tags FROM index_items WHERE source IN ({theirs})", batch)
        self._db.executemany(
            "DELETE FROM index_words WHERE word = ? AND item = ?",
            [(w, idx) for idx, title, tags in rows.fetchall() for w in _words(title, json.loads(tags))],
        )
        self._db.execute(f"DELETE FROM index_items WHERE source IN ({theirs})", batch)

    def meta(self, item: str) -> tuple[str, tuple[str, ...]] | None:
        """``item``'s title and tags, or None if nobody described it."""
        return self.metas([item]).get(item)

    def metas(self, items: Iterable[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
        """``meta`` of each of ``items`` that somebody described, in one query."""
        rows = self._db.execute(
            "SELECT i.item, i.title, i.tags FROM json_each(?) j JOIN index_items i ON i.item = j.value",
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

    def _index(self, idx: int, before: set[str], after: set[str]) -> None:
        self._db.executemany("DELETE FROM index_words WHERE word = ? AND item = ?", [(w, idx) for w in before - after])
        self._db.executemany("INSERT INTO index_words VALUES (?, ?)", [(w, idx) for w in after - before])
