"""The same export in DuckDB and in PostgreSQL: same tables, rows and ids; dbt gives the same memberships."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ctsync.build import build_models
from ctsync.warehouse.loader import LoadOptions, load_export_files
from tests.models.conftest import AS_OF, NICKNAME, SCHEMA, TIMEZONE, BuiltSample, query
from tests.postgres import fresh_database

pytestmark = pytest.mark.postgres


def pg(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg2

    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def postgres_sample(built_sample: BuiltSample) -> Iterator[str]:
    """The session's sample export loaded into a fresh PostgreSQL database and built with dbt there."""
    with fresh_database() as url:
        summary = load_export_files(
            [str(built_sample.export)], LoadOptions(nickname=NICKNAME, timezone=TIMEZONE), warehouse=url
        )
        assert not summary.failed, [f.error for f in summary.failed]
        result = build_models(warehouse=url, as_of=AS_OF)
        assert result.success, result.failures
        yield url


def tables(rows: list[tuple[Any, ...]]) -> set[str]:
    return {str(row[0]) for row in rows}


def test_the_loader_writes_the_same_tables_rows_and_ids(built_sample: BuiltSample, postgres_sample: str) -> None:
    listing = (
        f"select table_name from information_schema.tables where table_schema = '{SCHEMA}' "
        "and table_name not like '\\_%' escape '\\'"
    )
    duck_tables, pg_tables = tables(query(built_sample.warehouse, listing)), tables(pg(postgres_sample, listing))
    assert duck_tables == pg_tables
    assert {"tracks", "identifies", "users", "app_launched", "charged"} <= pg_tables
    for table in sorted(pg_tables):
        ids = f"select id from {SCHEMA}.{table} order by id"
        assert [row[0] for row in query(built_sample.warehouse, ids)] == [row[0] for row in pg(postgres_sample, ids)], (
            table
        )
    columns = (
        f"select table_name, column_name from information_schema.columns where table_schema = '{SCHEMA}' order by 1, 2"
    )
    assert query(built_sample.warehouse, columns) == pg(postgres_sample, columns)


def test_dbt_on_postgres_gives_the_same_memberships_and_traits(built_sample: BuiltSample, postgres_sample: str) -> None:
    memberships = (
        "select audience_key, coalesce(user_id, ''), coalesce(anonymous_id, '') "
        "from engage.engage_audience_memberships order by 1, 2, 3"
    )
    duck = query(built_sample.warehouse, memberships)
    assert duck and duck == pg(postgres_sample, memberships)
    traits = (
        "select trait_key, coalesce(user_id, ''), coalesce(anonymous_id, ''), value_type "
        "from engage.engage_computed_traits order by 1, 2, 3"
    )
    assert query(built_sample.warehouse, traits) == pg(postgres_sample, traits)
    values = "select trait_key, coalesce(user_id, anonymous_id), value from engage.engage_computed_traits"
    duck_values = {(key, who): value for key, who, value in query(built_sample.warehouse, values)}
    pg_values = {(key, who): value for key, who, value in pg(postgres_sample, values)}
    assert duck_values.keys() == pg_values.keys()
    for key, value in duck_values.items():
        if key[0] == "lifetime_revenue":  # a sum of doubles: the engines may differ in the last digit
            assert float(value) == pytest.approx(float(pg_values[key]))
        else:
            assert value == pg_values[key], key
