"""Every loader test runs on both warehouses: a DuckDB file and a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from ctsync.warehouse.targets import canonical_type
from tests.postgres import fresh_database


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes empty warehouses of this test's kind: DuckDB file paths or PostgreSQL URLs."""
    with ExitStack() as stack:
        counter = iter(range(100))

        def make() -> str:
            if request.param == "duckdb":
                return str(tmp_path / f"warehouse{next(counter)}.duckdb")
            return stack.enter_context(fresh_database())

        yield make


@pytest.fixture
def warehouse(make_warehouse: Callable[[], str]) -> str:
    return make_warehouse()


def query(warehouse: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run SQL on either warehouse (``?`` placeholders)."""
    if warehouse.startswith("postgresql"):
        import psycopg2

        with psycopg2.connect(warehouse) as connection, connection.cursor() as cursor:
            cursor.execute("set TimeZone = 'UTC'")
            cursor.execute(sql.replace("?", "%s"), params)
            rows = list(cursor.fetchall())
        connection.close()
        return rows
    import duckdb

    con = duckdb.connect(warehouse, read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def columns(warehouse: str, table: str, schema: str = "clevertap_prod") -> dict[str, str]:
    """Column -> canonical type (VARCHAR, BIGINT, DOUBLE, BOOLEAN, TIMESTAMP WITH TIME ZONE)."""
    rows = query(
        warehouse,
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    )
    return {name: canonical_type(data_type) for name, data_type in rows}


def is_duckdb(warehouse: str) -> bool:
    return not warehouse.startswith("postgresql")
