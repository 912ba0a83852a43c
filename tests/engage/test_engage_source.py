"""``--engage-source FOLDER``: the engage relations as Parquet folders (laid out as Spark writes tables),
the sync's state in another database (a DuckDB file or PostgreSQL). The Identify calls must be those of
a sync of the warehouse that holds the same relations, on the first sync and after a change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from ctsync.cli_sync import app
from ctsync.engage.run import sync_destination
from ctsync.engage.source import RELATIONS, ParquetSource, SparkSource, expose, parse_engage_source
from ctsync.engage.state import connect
from ctsync.errors import CtsyncError
from ctsync.warehouse.state import state_engine
from tests.engage.conftest import EngageData, sync_environment
from tests.engage.identify_calls import identify_calls, line_count
from tests.postgres import fresh_database

BACKENDS = ("duckdb", "postgres")
"""The state database (``warehouse``); the engage relations are always a DuckDB build's, as Parquet."""

PARTITIONED = {"engage_audience_memberships": "audience_key", "engage_computed_traits": "trait_key"}

runner = CliRunner()


def export_engage(build: Path, folder: Path) -> Path:
    """``engage.*`` of ``build`` as Parquet folders, laid out as Spark writes tables: memberships and values
    in Hive partition folders by key (the key only in the folder names), the rest one file each, each
    folder with Spark's ``_SUCCESS`` marker (which readers skip)."""
    if folder.exists():
        shutil.rmtree(folder)
    con = duckdb.connect(str(build), read_only=True)
    try:
        tables = [
            row[0]
            for row in con.execute("select table_name from duckdb_tables() where schema_name = 'engage'").fetchall()
        ]
        for table in tables:
            target = folder / table
            target.mkdir(parents=True)
            key = PARTITIONED.get(table)
            if key:
                con.execute(f"copy engage.{table} to '{target}' (format parquet, partition_by ({key}))")
            else:
                con.execute(f"copy engage.{table} to '{target / 'part-00000.parquet'}' (format parquet)")
            (target / "_SUCCESS").write_bytes(b"")
    finally:
        con.close()
    return folder


def define(build: EngageData) -> None:
    build.audience("vip", [("u1", "a1"), ('u"2,x', "a2"), ("u3", None), ("u\n4", "a4"), ("u6", "")])
    build.audience("visitors", [(None, "a9"), ("u5", "a5")], include_anonymous=True)
    build.audience("nobody_yet", [])
    build.trait("ltv", {("u1", "a1"): 12.5, ("u3", None): 7})
    build.trait(
        "app_version", {("u1", "a1"): "4.2.0", (None, "a9"): "1.0", ("u5", "a5"): 'say "hi"'}, value_type="string"
    )
    build.emails({"u1": "u1@example.com", "u5": "u5@example.com"})


def sync(warehouse: str, out: Path, **options: Any) -> Any:
    return sync_destination("jsonl", warehouse=warehouse, environ={"CTSYNC_JSONL_PATH": str(out)}, **options)


def test_a_sync_from_parquet_folders_sends_the_calls_a_sync_of_the_warehouse_sends(
    warehouse: str, tmp_path: Path
) -> None:
    build = EngageData(str(tmp_path / "build.duckdb"))
    build.create_tables()
    define(build)
    folder = export_engage(build.path, tmp_path / "engage")
    direct, from_source = tmp_path / "direct.jsonl", tmp_path / "from-source.jsonl"

    sync(build.warehouse, direct)
    summary = sync(warehouse, from_source, engage_source=str(folder))

    assert identify_calls(from_source) == identify_calls(direct)
    assert len(identify_calls(direct)) == 12
    assert summary.engage_source == str(folder)
    assert summary.engage_rows == {
        "engage_audiences": 3,
        "engage_audience_memberships": 7,
        "engage_traits": 2,
        "engage_computed_traits": 5,
        "engage_user_emails": 2,
    }

    # A change: u1 leaves vip, u7 joins, u1's ltv changes, u3's goes. Only that is sent, as directly.
    build.audience("vip", [('u"2,x', "a2"), ("u3", None), ("u\n4", "a4"), ("u6", ""), ("u7", "a7")])
    build.trait("ltv", {("u1", "a1"): 13})
    export_engage(build.path, folder)
    seen_direct, seen_source = line_count(direct), line_count(from_source)
    sync(build.warehouse, direct)
    again = sync(warehouse, from_source, engage_source=str(folder))

    changes = identify_calls(from_source, since_line=seen_source)
    assert changes == identify_calls(direct, since_line=seen_direct)
    assert sorted((call.get("userId"), json.dumps(call["traits"], sort_keys=True)) for call in changes) == [
        ("u1", '{"email": "u1@example.com", "ltv": 13}'),
        ("u1", '{"email": "u1@example.com", "vip": false}'),
        ("u3", '{"ltv": null}'),
        ("u7", '{"vip": true}'),
    ]
    assert (again.entered, again.exited, again.traits_changed) == (1, 1, 2)

    # Nothing changed: nothing sent.
    seen_source = line_count(from_source)
    assert sync(warehouse, from_source, engage_source=str(folder)).sent == 0
    assert line_count(from_source) == seen_source


@pytest.mark.postgres
def test_text_reaches_postgresql_exactly(tmp_path: Path) -> None:
    """NULL stays NULL and an empty string empty; quotes, commas, newlines and non-ASCII survive COPY;
    NUL, which PostgreSQL text cannot hold, becomes U+FFFD (as the loader stores it)."""
    folder = tmp_path / "engage"
    values = [None, "", 'a "quoted", value', "two\nlines", "\\N", "naïve ✓", "nul\x00here"]
    tables = {
        "engage_audiences": pa.table({"audience_key": ["vip"], "include_anonymous": [None]}),
        "engage_audience_memberships": pa.table(
            {
                "user_id": values,
                "anonymous_id": list(reversed(values)),
                "audience_key": ["vip"] * len(values),
                "is_member": [True, False, None, True, True, True, True],
            }
        ),
        "engage_traits": pa.table({"trait_key": pa.array([], pa.string())}),
        "engage_computed_traits": pa.table(
            {name: pa.array([], pa.string()) for name in ("user_id", "anonymous_id", "trait_key", "value")}
        ),
    }
    for name, table in tables.items():
        (folder / name).mkdir(parents=True)
        pq.write_table(table, folder / name / "part-0.parquet")
    with fresh_database() as url:
        rows = _exposed_memberships(url, folder)
    expected = [v.replace("\x00", "\ufffd") if v else v for v in values]
    assert [row[0] for row in rows] == expected
    assert [row[1] for row in rows] == list(reversed(expected))
    assert [row[2] for row in rows] == [True, False, None, True, True, True, True]


def _exposed_memberships(url: str, folder: Path) -> list[Any]:
    engine = state_engine(url)
    try:
        conn = connect(engine, wait_seconds=1)
        try:
            exposed = expose(conn, ParquetSource(str(folder)))
            assert exposed.schema.startswith("pg_temp_")
            return list(
                conn.execute(
                    sa.text(
                        f"select user_id, anonymous_id, is_member from {exposed.schema}.engage_audience_memberships"
                    )
                ).all()
            )
        finally:
            conn.close()
    finally:
        engine.dispose()


def test_sync_takes_the_source_from_the_option_or_the_environment(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "state.duckdb")
    build = EngageData(str(tmp_path / "build.duckdb"))
    build.create_tables()
    define(build)
    folder = export_engage(build.path, tmp_path / "engage")
    out = tmp_path / "identify.jsonl"

    result = runner.invoke(
        app,
        ["sync", "--destination", "jsonl", "--warehouse", warehouse, "--engage-source", str(folder), "--json"],
        env=sync_environment(CTSYNC_JSONL_PATH=str(out)),
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["status"], document["sent"], document["engage_source"]) == ("succeeded", 12, str(folder))
    assert document["engage_rows"]["engage_audience_memberships"] == 7

    build.audience("vip", [("u8", "a8")])
    export_engage(build.path, folder)
    result = runner.invoke(
        app,
        ["sync", "--destination", "jsonl", "--warehouse", warehouse],
        env=sync_environment(CTSYNC_JSONL_PATH=str(out), CTSYNC_ENGAGE_SOURCE=str(folder)),
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 entered, 5 exited, 0 traits changed" in text
    assert f"read from {folder}: 15 rows of 5 engage relations" in text
    assert "--engage-source" in runner.invoke(app, ["sync", "--help"], env={"COLUMNS": "200"}).output
    assert "CTSYNC_ENGAGE_SOURCE" in runner.invoke(app, ["sync", "--help"], env={"COLUMNS": "200"}).output


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no-relation", "engage/engage_computed_traits is not a folder of Parquet files"),
        ("no-column", "the Parquet files of engage_audience_memberships has no column is_member"),
        ("bad-schema", "spark:SCHEMA needs a schema name"),
    ],
)
def test_a_source_that_cannot_be_read_is_a_clear_error(tmp_path: Path, damage: str, message: str) -> None:
    warehouse = str(tmp_path / "state.duckdb")
    build = EngageData(str(tmp_path / "build.duckdb"))
    build.create_tables()
    define(build)
    folder = export_engage(build.path, tmp_path / "engage")
    source = str(folder)
    if damage == "no-relation":
        shutil.rmtree(folder / "engage_computed_traits")
    elif damage == "no-column":
        shutil.rmtree(folder / "engage_audience_memberships")
        (folder / "engage_audience_memberships").mkdir()
        pq.write_table(
            pa.table({"audience_key": ["vip"], "user_id": ["u1"], "anonymous_id": ["a1"]}),
            folder / "engage_audience_memberships" / "part-0.parquet",
        )
    else:
        source = "spark:bad-name"

    result = runner.invoke(
        app,
        ["sync", "--destination", "jsonl", "--warehouse", warehouse, "--engage-source", source],
        env=sync_environment(CTSYNC_JSONL_PATH=str(tmp_path / "out.jsonl")),
    )
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "out.jsonl").exists()
    assert not Path(warehouse).exists(), "a state database the run created is not left behind empty"


def test_engage_source_forms() -> None:
    assert parse_engage_source("spark", {}) == SparkSource()
    assert parse_engage_source(" spark:main.engage ", {"CTSYNC_SPARK_MASTER": "local[2]"}) == SparkSource(
        schema="main.engage", settings={"CTSYNC_SPARK_MASTER": "local[2]"}
    )
    connect_source = parse_engage_source("sc://spark.example.com:15002/;token=secret", {})
    assert connect_source == SparkSource(remote="sc://spark.example.com:15002/;token=secret")
    assert connect_source.describe() == "sc://spark.example.com:15002 (engage)"  # no token in messages
    assert parse_engage_source("s3://bucket/engage", {}) == ParquetSource("s3://bucket/engage")
    assert ParquetSource("s3://key:secret@bucket/engage").describe() == "s3://bucket/engage"
    with pytest.raises(CtsyncError, match="engage source is empty"):
        parse_engage_source("  ", {})
    assert [relation.name for relation in RELATIONS if relation.required] == [
        "engage_audiences", "engage_audience_memberships", "engage_traits", "engage_computed_traits",
    ]  # fmt: skip
