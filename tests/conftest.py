"""Shared fixtures: export files written on the fly, and a throwaway DuckDB warehouse."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def write_export(
    path: Path,
    lines: Iterable[dict[str, Any] | str | bytes],
    *,
    header: str | None = None,
    compress: bool = True,
    newline: bytes = b"\n",
) -> Path:
    """Write a CleverTap-style JSON-lines export file; dicts are serialised, str/bytes written as is."""
    body = []
    if header is not None:
        body.append(header.encode())
    for line in lines:
        if isinstance(line, dict):
            body.append(json.dumps(line).encode())
        elif isinstance(line, str):
            body.append(line.encode())
        else:
            body.append(line)
    data = newline.join(body) + newline
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def event(name: str, ts: int, props: dict[str, Any] | None = None, **profile: Any) -> dict[str, Any]:
    """A legacy event record."""
    record: dict[str, Any] = {"ts": ts, "eventName": name, "profile": profile or {"objectId": "__gdefault"}}
    record["eventProps"] = props if props is not None else {}
    return record


@pytest.fixture
def warehouse(tmp_path: Path) -> str:
    return str(tmp_path / "warehouse.duckdb")


@pytest.fixture
def export_file(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1_000_000))

    def make(event_name: str, lines: Iterable[dict[str, Any] | str | bytes], **kwargs: Any) -> Path:
        day = kwargs.pop("day", "20240312")
        request = kwargs.pop("request_id", "1700000001")
        safe = event_name.replace(" ", "-").replace("/", "-")
        name = f"{request}-1710000000-{safe}-{day}-{next(counter)}-0.json" + (
            ".gz" if kwargs.get("compress", True) else ""
        )
        folder = kwargs.pop("folder", tmp_path / "export")
        return write_export(Path(folder) / name, lines, **kwargs)

    return make
