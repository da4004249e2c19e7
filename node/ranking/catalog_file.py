"""Reading catalog files for ``edgeswarm catalog add``: CSV or JSON, validated, bounded."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from edgeswarm.node.config import ConfigError

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_FIELD = 256


def read_catalog(path: Path) -> list[dict[str, Any]]:
    """``[{"item", "title", "tags"}]`` from a JSON list or a CSV with an item,title,tags header.

    CSV tags are separated by ``;``. Errors name the file and the row (a ``ConfigError``).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    text = data.decode("utf-8", errors="replace")
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(raw, list):
            raise ConfigError(f"{path}: expected a JSON list of items")
        rows = raw
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or not {"item", "title"} <= set(reader.fieldnames):
            raise ConfigError(f"{path}: the CSV header must name item, title and tags")
        rows = [{**r, "tags": [t.strip() for t in (r.get("tags") or "").split(";") if t.strip()]} for r in reader]
    items = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ConfigError(f"{path}: item {n} is not an object")
        item, title, tags = row.get("item"), row.get("title"), row.get("tags", [])
        if not (isinstance(item, str) and item and isinstance(title, str) and isinstance(tags, list)):
            raise ConfigError(f"{path}: item {n} needs 'item' and 'title' (text) and 'tags' (a list)")
        if len(item) > 128 or len(title) > MAX_FIELD or len(tags) > 16 or any(len(str(t)) > 64 for t in tags):
            raise ConfigError(f"{path}: item {n} is too long (item 128, title 256, 16 tags of 64 characters)")
        items.append({"item": item, "title": title, "tags": [str(t) for t in tags]})
    return items
