"""The lake tests' parts: the bundled sample export and its DuckDB load (what every lake load is compared
with), an export whose tables evolve from batch to batch, an S3-compatible server, and the comparison."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ctsync.exports.sample import write_sample_export
from ctsync.warehouse.lake.storage import PARTITION_COLUMN
from ctsync.warehouse.loader import LoadOptions, LoadSummary, load_export_files
from ctsync.warehouse.targets import canonical_type
from tests.conftest import event, write_export
from tests.warehouse.conftest import query
from tests.warehouse.test_object_storage import s3_endpoint  # noqa: F401  (a moto_server on 127.0.0.1)

SCHEMA = "clevertap_prod"
OPTIONS = LoadOptions(nickname="CleverTap_Prod")
LOAD_TIME_COLUMNS = ("received_at", "uuid_ts")
"""When a row was loaded: the only values two loads of the same files do not share."""
BOOKKEEPING = ("_loads", "_rejected", "_lake_batches", "_lake_registrations")


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ctsync sample``'s export (events and profiles), small."""
    folder = tmp_path_factory.mktemp("sample") / "export"
    write_sample_export(folder, events=1500, users=120, seed=11, days=3, end=datetime(2026, 11, 20, tzinfo=UTC))
    return folder


@pytest.fixture(scope="session")
def reference(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sample loaded into a DuckDB warehouse: the tables a lake load must give."""
    warehouse = str(tmp_path_factory.mktemp("reference") / "warehouse.duckdb")
    summary = load_export_files([str(sample)], OPTIONS, warehouse=warehouse)
    assert not summary.problems
    return warehouse


def write_evolving_export(folder: Path) -> Path:
    """Files that load one a batch and change the tables as they go: ``amount`` is an integer, then a real
    (BIGINT widened to DOUBLE), ``coupon`` appears later, a third export repeats the first one's events
    and has a line that is no JSON, and profiles update a user and turn ``score`` from integers to reals."""

    def charged(ts: int, amount: float, user: str, **more: Any) -> dict[str, Any]:
        return event("Charged", ts, {"Amount": amount, **more}, objectId=f"__g{user}", identity=user)

    first = [charged(20240312101010 + i, 5 + i, f"u{i}") for i in range(5)]
    write_export(folder / "1700000001-1710000000-Charged-20240312-0-0.json.gz", first)
    write_export(
        folder / "1700000002-1710000100-Charged-20240313-0-0.json.gz",
        [charged(20240313101010 + i, 5.5 + i, f"u{i}", Coupon="SPRING") for i in range(5)],
    )
    write_export(
        folder / "1700000003-1710000200-Charged-20240314-0-0.json.gz",
        [*first, charged(20240314101010, 1, "u9"), "{not json"],
    )
    for run, records in (
        (1710000300, [{"identity": "u0", "Name": "Ann", "Score": 3}, {"identity": "u1", "Plan": "free"}]),
        (1710000400, [{"identity": "u0", "Plan": "gold", "Score": 4.5}, {"identity": "u2", "Name": "Cy"}]),
    ):
        write_export(folder / f"100000000-1700000009-{run}-3-json.gz", [json.dumps(r) for r in records])
    return folder


@pytest.fixture(scope="session")
def evolving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_evolving_export(tmp_path_factory.mktemp("evolving") / "export")


EVOLVING_OPTIONS = LoadOptions(nickname="Evolving", batch_bytes=1)
"""One file a batch."""


@pytest.fixture(scope="session")
def evolving_reference(evolving: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    warehouse = str(tmp_path_factory.mktemp("evolving-reference") / "warehouse.duckdb")
    summary = load_export_files([str(evolving)], EVOLVING_OPTIONS, warehouse=warehouse)
    assert not summary.problems
    return warehouse


@pytest.fixture
def s3_lake(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:  # noqa: F811
    """An empty bucket on the S3-compatible server; credentials only in the environment."""
    import boto3
    import s3fs

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    client = boto3.client("s3")
    client.create_bucket(Bucket="ctsync-lake")
    yield "s3://ctsync-lake/lake"
    for item in client.list_objects_v2(Bucket="ctsync-lake").get("Contents", []):
        client.delete_object(Bucket="ctsync-lake", Key=item["Key"])
    client.delete_bucket(Bucket="ctsync-lake")
    s3fs.S3FileSystem.clear_instance_cache()


def lake_connection(root: str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that reads the lake (object storage through fsspec)."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    if "://" in root:
        import fsspec

        con.register_filesystem(fsspec.filesystem(root.split("://", 1)[0]))
    return con


def lake_files(root: str, schema: str = SCHEMA) -> list[str]:
    """Every file under the lake root's schema folder and its staging area, relative to the root."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(root)
    found = [*fs.find(f"{path}/{schema}"), *fs.find(f"{path}/_staging/{schema}")]
    return sorted(str(item).removeprefix(path.rstrip("/")).lstrip("/") for item in found)


def read_lake(con: duckdb.DuckDBPyConnection, root: str, schema: str, table: str) -> str:
    """SQL for a lake table as its readers see it: every file, columns unioned by name, the partition column."""
    files = [f"{root}/{relative}" for relative in lake_files(root, schema) if relative.startswith(f"{schema}/{table}/")]
    listed = ", ".join(f"'{file}'" for file in files)
    return f"read_parquet([{listed}], union_by_name = true, hive_partitioning = true)"


@dataclass(frozen=True)
class Compared:
    rows: dict[str, int]
    """Rows per table in the lake."""


def assert_lake_equals_warehouse(root: str, state: str, warehouse: str, schema: str = SCHEMA) -> Compared:
    """The lake's tables have the warehouse's tables, columns, types, rows and ids (load times aside),
    the state database's catalog has the same columns in the same order, and its bookkeeping counts agree."""
    expected_tables = sorted(
        str(row[0])
        for row in query(
            warehouse,
            "select table_name from information_schema.tables where table_schema = ? and table_type = 'BASE TABLE'",
            [schema],
        )
        if str(row[0]) not in BOOKKEEPING
    )
    in_lake = sorted({relative.split("/")[1] for relative in lake_files(root, schema) if relative.startswith(schema)})
    assert in_lake == expected_tables
    con = lake_connection(root)
    rows = {}
    try:
        for table in expected_tables:
            wanted = _columns(warehouse, schema, table)
            assert _columns(state, schema, table) == wanted, f"catalog of {table}"
            relation = read_lake(con, root, schema, table)
            got = {
                str(name): canonical_type(str(type_))
                for name, type_, *_ in con.execute(f"describe select * from {relation}").fetchall()
            }
            partitioned = got.pop(PARTITION_COLUMN, None)
            assert got == dict(wanted), f"columns of {table}"
            assert (partitioned is not None) == (table != "users"), f"partitioning of {table}"
            compared = ", ".join(f'"{name}"' for name, _ in wanted if name not in LOAD_TIME_COLUMNS)
            con.execute(f"attach '{warehouse}' as reference (read_only)")
            try:
                missing = con.execute(
                    f'select count(*) from (select {compared} from reference."{schema}"."{table}" '
                    f"except all select {compared} from {relation})"
                ).fetchall()[0][0]
                extra = con.execute(
                    f"select count(*) from (select {compared} from {relation} "
                    f'except all select {compared} from reference."{schema}"."{table}")'
                ).fetchall()[0][0]
                expected_rows = con.execute(f'select count(*) from reference."{schema}"."{table}"').fetchall()[0][0]
            finally:
                con.execute("detach reference")
            assert (missing, extra) == (0, 0), f"rows of {table}: {missing} missing, {extra} extra"
            if partitioned is not None:
                day = "cast(timezone('UTC', \"timestamp\") as date)"
                wrong_day = con.execute(
                    f"select count(*) from {relation} where {PARTITION_COLUMN} <> {day}"
                ).fetchall()[0][0]
                assert wrong_day == 0, f"partitions of {table}"
            rows[table] = int(expected_rows)
    finally:
        con.close()
    for table, counted in (
        ("_loads", "count(*) filter (where status = 'loaded'), sum(rows_inserted)"),
        ("_rejected", "count(*), 0"),
    ):
        assert query(state, f'select {counted} from "{schema}"."{table}"') == query(
            warehouse, f'select {counted} from "{schema}"."{table}"'
        ), table
    return Compared(rows)


def _columns(database: str, schema: str, table: str) -> list[tuple[str, str]]:
    return [
        (str(name), canonical_type(str(type_)))
        for name, type_ in query(
            database,
            "select column_name, data_type from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema, table],
        )
    ]


def load_into_lake(paths: list[str], root: str, state: str, options: LoadOptions = OPTIONS) -> LoadSummary:
    return load_export_files(paths, options, warehouse=state, lake=root)
