"""``ctsync lake register``: the lake's tables in a local Spark catalog, with the warehouse's rows, and
brought up to date when later loads add columns and widen types."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ctsync.warehouse.lake.jobs import register_lake_tables
from tests.conftest import event, write_export
from tests.lake.conftest import EVOLVING_OPTIONS, SCHEMA, lake_connection, load_into_lake, read_lake
from tests.warehouse.conftest import query

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark


@pytest.fixture
def spark(tmp_path: Path) -> Iterator[SparkSession]:
    """A local Spark session (one core) with its warehouse folder and Derby metastore under ``tmp_path``;
    a session already running in this process (the dbt-on-Spark tests') is used as it is."""
    java_home = os.environ.get("JAVA_HOME")
    if shutil.which("java") is None and not (java_home and (Path(java_home) / "bin" / "java").exists()):
        pytest.skip("registering the lake in Spark needs Java 17 or 21 (apt-get install openjdk-17-jre-headless)")
    if importlib.util.find_spec("pyspark") is None:
        pytest.skip("registering the lake in Spark needs pyspark: pip install -c constraints.txt -e '.[spark]'")
    from pyspark.sql import SparkSession

    running = SparkSession.getActiveSession()
    if running is not None:
        yield running
        return
    session = (
        SparkSession.builder.master("local[1]")
        .appName("ctsync-lake-tests")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(tmp_path / "spark-warehouse"))
        .config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            f"jdbc:derby:;databaseName={tmp_path / 'metastore_db'};create=true",
        )
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={tmp_path}")
        .enableHiveSupport()
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()


def test_lake_tables_registered_in_spark_hold_the_warehouse_rows(
    tmp_path: Path, sample: Path, reference: str, evolving: Path, evolving_reference: str, spark: SparkSession
) -> None:
    root, state = str(tmp_path / "lake"), str(tmp_path / "state.duckdb")
    assert not load_into_lake([str(sample)], root, state).problems
    done = register_lake_tables(state, root, "CleverTap_Prod", spark)
    tables = [
        str(row[0])
        for row in query(
            reference,
            "select table_name from information_schema.tables "
            "where table_schema = ? and table_type = 'BASE TABLE' "
            "and table_name not like '\\_%' escape '\\' order by 1",
            [SCHEMA],
        )
    ]
    assert sorted(item.spark_table for item in done) == sorted(
        [f"`{SCHEMA}`.`{table}`" for table in [*tables, "_loads", "tracks"]]
    )
    assert {item.action for item in done} == {"created", "view"}
    # One Spark job counts every table (and tracks): rows and distinct ids, as in the warehouse.
    relations = [*tables, "tracks"]
    union = " union all ".join(f"select '{table}' as name, id from {SCHEMA}.`{table}`" for table in relations)
    counted = {
        row[0]: (row[1], row[2])
        for row in spark.sql(f"select name, count(*), count(distinct id) from ({union}) group by name").collect()
    }
    assert counted == {
        table: query(reference, f'select count(*), count(distinct id) from {SCHEMA}."{table}"')[0]
        for table in relations
    }
    # The load history too: dbt finds the schemas ctsync loaded by their _loads table.
    assert spark.sql(f"select count(*), count(distinct checksum) from {SCHEMA}._loads").collect()[0] == tuple(
        query(state, f"select count(*), count(distinct checksum) from {SCHEMA}._loads")[0]
    )
    fields = {field.name: field.dataType.simpleString() for field in spark.table(f"{SCHEMA}.charged").schema.fields}
    assert (fields["timestamp"], fields["timestamp__date"], fields["id"]) == ("timestamp", "date", "string")
    assert query(state, f"select count(*) from {SCHEMA}._lake_registrations") == [(len(done),)]

    # Later loads add a column, then widen amount to DOUBLE: registering again brings the tables up to date.
    first = tmp_path / "first"
    first.mkdir()
    shutil.copy(next(evolving.glob("*-Charged-20240312-*")), first)
    evolving_state = str(tmp_path / "state-evolving.duckdb")

    def load_and_register(folder: Path) -> dict[str, str]:
        assert not load_into_lake([str(folder)], root, evolving_state, EVOLVING_OPTIONS).problems
        done = register_lake_tables(evolving_state, root, "Evolving", spark)
        return {item.spark_table.replace("`", ""): item.action for item in done}

    assert load_and_register(first)["evolving.charged"] == "created"
    gift = tmp_path / "gift"
    write_export(
        gift / "1700000004-1710000050-Charged-20240312-0-0.json.gz",
        [event("Charged", 20240312111111, {"Amount": 7, "Gift Wrap": True}, identity="u7")],
    )
    assert load_and_register(gift)["evolving.charged"] == "columns added"
    actions = load_and_register(evolving)
    assert (actions["evolving.charged"], actions["evolving.identifies"], actions["evolving._loads"]) == (
        "recreated",  # amount: BIGINT -> DOUBLE
        "created",
        "refreshed",
    )
    con = lake_connection(root)
    try:
        for table, compared in (
            ("charged", "sum(amount), count(coupon), count(gift_wrap)"),
            ("users", "count(*), sum(score)"),
        ):
            expected = con.execute(
                f"select {compared}, count(*) from {read_lake(con, root, 'evolving', table)}"
            ).fetchall()[0]
            assert tuple(spark.sql(f"select {compared}, count(*) from evolving.{table}").collect()[0]) == expected
    finally:
        con.close()
    assert expected == (3, 4.5, 3)  # users u0 (score 4.5), u1 and u2
