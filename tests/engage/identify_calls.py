"""Identify calls written by the JSON-lines destination, compared across syncs.

Two syncs of the same audiences and traits send the same calls except for what names the run:
``messageId`` (its time and a random part) and ``timestamp`` / ``originalTimestamp`` (its start).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RUN_FIELDS = ("messageId", "timestamp", "originalTimestamp")


def identify_calls(path: Path, *, since_line: int = 0) -> list[dict[str, Any]]:
    """The calls of ``path`` (from line ``since_line``), without the run's fields, in a stable order."""
    if not path.exists():
        return []
    calls = []
    for line in path.read_text(encoding="utf-8").splitlines()[since_line:]:
        call = json.loads(line)
        for name in RUN_FIELDS:
            call.pop(name, None)
        calls.append(call)
    return sorted(calls, key=lambda call: json.dumps(call, sort_keys=True))


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0
