"""A warehouse with Segment-shaped event tables (written with plain SQL) and a CleverTap stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ctsync.destinations import CleverTapUploadClient
from ctsync.destinations.clevertap_events import CleverTapEventClient
from ctsync.warehouse.state import state_engine
from tests.engage.conftest import FAST_RETRY, sync_environment, write_config  # noqa: F401
from tests.postgres import fresh_database
from tests.servers.clevertap import CleverTapServer

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
SCHEMA = "shop_prod"

TRACK_COLUMNS = (
    "id varchar, user_id varchar, anonymous_id varchar, event varchar, event_text varchar, "
    '"timestamp" timestamp with time zone, original_timestamp timestamp with time zone, '
    "sent_at timestamp with time zone, received_at timestamp with time zone, "
    "context_device_token varchar, context_os_name varchar, context_library_name varchar"
)


class Warehouse:
    def __init__(self, url: str) -> None:
        self.url = url

    def sql(self, statement: str, rows: list[dict[str, Any]] | None = None) -> list[tuple[Any, ...]]:
        engine = state_engine(self.url)
        try:
            with engine.begin() as conn:
                result = conn.execute(sa.text(statement), rows or {})
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def create(self) -> None:
        self.sql(f"create schema if not exists {SCHEMA}")
        self.sql(f"create table {SCHEMA}.tracks ({TRACK_COLUMNS})")
        self.sql(
            f"create table {SCHEMA}.product_viewed ({TRACK_COLUMNS}, product_name varchar, price double precision)"
        )
        self.sql(
            f"create table {SCHEMA}.order_completed ({TRACK_COLUMNS}, order_id varchar, total double precision, "
            "currency varchar, products varchar)"
        )
        self.sql(f"create table {SCHEMA}.app_launched ({TRACK_COLUMNS})")
        self.sql(f"create table {SCHEMA}.pages ({TRACK_COLUMNS}, name varchar, url varchar, path varchar)")
        self.sql(f"create table {SCHEMA}.screens ({TRACK_COLUMNS}, name varchar)")
        self.sql(
            f'create table {SCHEMA}.identifies (id varchar, user_id varchar, "timestamp" timestamp with time zone)'
        )

    def add(self, table: str, count: int, *, start: int = 0, **columns: Any) -> list[str]:
        """``count`` rows in ``table`` (ids ``<table>-<n>``), also in tracks for Track tables."""
        ids = []
        rows = []
        for n in range(start, start + count):
            row = {
                "id": f"{table}-{n}",
                "user_id": f"u{n % 7}",
                "anonymous_id": None,
                "event": table,
                "event_text": table.replace("_", " ").title(),
                "timestamp": T0 + timedelta(minutes=n),
                "original_timestamp": T0 + timedelta(minutes=n),
                "sent_at": T0,
                "received_at": T0,
                "context_device_token": None,
                "context_os_name": None,
                "context_library_name": "analytics-python",
            }
            row.update(columns)
            rows.append(row)
            ids.append(row["id"])
        names = ", ".join(f'"{key}"' for key in rows[0])
        values = ", ".join(f":{key}" for key in rows[0])
        self.sql(f"insert into {SCHEMA}.{table} ({names}) values ({values})", rows)
        if table not in ("pages", "screens", "tracks"):
            standard = TRACK_COLUMNS.replace(" varchar", "").replace(" timestamp with time zone", "")
            self.sql(
                f"insert into {SCHEMA}.tracks select {standard} from {SCHEMA}.{table} where id in "
                f"({', '.join(repr(i) for i in ids)})"
            )
        return ids


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    if request.param == "duckdb":
        data = Warehouse(str(tmp_path / "warehouse.duckdb"))
        data.create()
        yield data
        return
    with fresh_database() as url:
        data = Warehouse(url)
        data.create()
        yield data


@pytest.fixture
def server() -> Iterator[CleverTapServer]:
    with CleverTapServer() as running:
        yield running


def event_client(server: CleverTapServer, **options: Any) -> CleverTapEventClient:
    settings: dict[str, Any] = {"timeout": 0.5, "retry": FAST_RETRY, "concurrency": 1, "name": "clevertap"}
    settings.update(options)
    batch = settings.pop("batch_size", None)
    upload = CleverTapUploadClient(server.account_id, server.passcode, base_url=server.url, **settings)
    try:
        return CleverTapEventClient(upload, batch_size=batch)
    finally:
        upload.close()
