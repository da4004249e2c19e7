"""A click log on disk, for the replay workload: the CSV format, its checks and the time split.

Format (UTF-8 CSV with a header row; columns in any order, other columns ignored):

- ``user``: who clicked (any text up to 128 characters); each user is one person on one
  node of the simulation;
- ``timestamp``: when, as seconds (an integer or decimal number, e.g. Unix time) or an
  ISO 8601 date and time (``2024-03-01T12:30:00``, with or without a zone; without one it
  is read as UTC);
- ``query``: what the user searched for (up to 256 characters, at least one word);
- ``item``: the item clicked (up to 128 characters);
- ``shown`` (optional): the items the search showed, ``|``-separated (at most 100); when
  given, the replay ranks these for the held-out click instead of the node's catalog
  matches.

Every row is checked; the first bad one stops the load with ``file:line: reason``. Sizes
are bounded (``MAX_ROWS`` rows, the field lengths above) so a file cannot make us hold more
than that.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edgeswarm.learning.grank import normalise

MAX_ROWS = 1_000_000
MAX_USER = 128
MAX_QUERY = 256
MAX_ITEM = 128
MAX_SHOWN = 100
REQUIRED = ("user", "timestamp", "query", "item")


class ClickLogError(ValueError):
    """The file is not a click log this replay can read; the message says where and why."""


@dataclass(frozen=True, slots=True)
class LoggedClick:
    """One row of the log."""

    user: str
    time: float
    query: str
    item: str
    shown: tuple[str, ...] = ()


def read_click_log(path: Path) -> list[LoggedClick]:
    """Every row of the CSV at ``path``, checked, in file order."""
    try:
        handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed by the `with` below
    except OSError as e:
        raise ClickLogError(f"{path}: cannot read the click log ({e.strerror})") from None
    with handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise ClickLogError(
                    f"{path}:1: the header lacks {', '.join(missing)} (needs {', '.join(REQUIRED)}, optional shown)"
                )
            rows = []
            for row in reader:
                if len(rows) == MAX_ROWS:
                    raise ClickLogError(f"{path}: more than {MAX_ROWS:,} rows")
                rows.append(_row(row, f"{path}:{reader.line_num}"))
        except UnicodeDecodeError:
            raise ClickLogError(f"{path}: not UTF-8 text") from None
        except csv.Error as e:
            raise ClickLogError(f"{path}:{reader.line_num}: {e}") from None
    if not rows:
        raise ClickLogError(f"{path}: no rows after the header")
    return rows


def _row(row: dict[str, str | None], where: str) -> LoggedClick:
    values = {c: (row.get(c) or "").strip() for c in (*REQUIRED, "shown")}
    for column, limit in (("user", MAX_USER), ("query", MAX_QUERY), ("item", MAX_ITEM)):
        if not values[column]:
            raise ClickLogError(f"{where}: empty {column}")
        if len(values[column]) > limit:
            raise ClickLogError(f"{where}: {column} longer than {limit} characters")
    if not normalise(values["query"]):
        raise ClickLogError(f"{where}: the query {values['query']!r} has no word in it")
    shown = tuple(s.strip() for s in values["shown"].split("|") if s.strip()) if values["shown"] else ()
    if len(shown) > MAX_SHOWN:
        raise ClickLogError(f"{where}: more than {MAX_SHOWN} shown items")
    if any(len(s) > MAX_ITEM for s in shown):
        raise ClickLogError(f"{where}: a shown item longer than {MAX_ITEM} characters")
    return LoggedClick(values["user"], _seconds(values["timestamp"], where), values["query"], values["item"], shown)


def _seconds(text: str, where: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ClickLogError(f"{where}: timestamp {text!r} is neither seconds nor ISO 8601") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp()
    if not math.isfinite(seconds):
        raise ClickLogError(f"{where}: timestamp {text!r} is not a finite number")
    return seconds


def split_by_time(clicks: list[LoggedClick], holdout: float) -> tuple[list[LoggedClick], list[LoggedClick]]:
    """(training, held out): each user's last ``holdout`` share of clicks by time is held out.

    A user with n clicks keeps floor(n x holdout) of them for testing, at least one once they
    have two (a user with a single click only trains). Ties in time keep file order. Both
    lists come back in time order.
    """
    by_user: defaultdict[str, list[tuple[float, int, LoggedClick]]] = defaultdict(list)
    for position, click in enumerate(clicks):
        by_user[click.user].append((click.time, position, click))
    train, test = [], []
    for rows in by_user.values():
        rows.sort(key=lambda r: r[:2])
        held = max(1, math.floor(len(rows) * holdout)) if len(rows) >= 2 and holdout > 0 else 0
        train += rows[: len(rows) - held]
        test += rows[len(rows) - held :]
    train.sort(key=lambda r: r[:2])
    test.sort(key=lambda r: r[:2])
    return [r[2] for r in train], [r[2] for r in test]
