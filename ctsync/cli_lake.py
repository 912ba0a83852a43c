"""``ctsync lake``: finish publishing a lake's batches, register its tables in Spark (thin over
:mod:`ctsync.warehouse.lake.jobs`). Loading into a lake is ``ctsync load --lake ROOT``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ctsync.cli_support import JsonOption, WarehouseOption, out, print_json, run_command, use_storage_settings
from ctsync.errors import CtsyncError
from ctsync.settings import load_settings

LakeOption = Annotated[
    str | None,
    typer.Option(
        "--lake",
        envvar="CTSYNC_LAKE",
        show_envvar=True,
        help="The lake root (a folder or s3://...): the tables are Parquet files there, and --warehouse "
        "holds only the lake's state (bookkeeping, catalog, sync state). See docs/lake.md.",
    ),
]
NicknameOption = Annotated[str, typer.Option(help="Source nickname: the schema whose tables to work on.")]

lake_app = typer.Typer(no_args_is_help=True, add_completion=False)


def _lake(lake: str | None) -> str:
    root = lake or load_settings().lake
    if not root:
        raise CtsyncError("name the lake: --lake ROOT or CTSYNC_LAKE (a folder or an s3://... URL)")
    return root


@lake_app.command("publish")
def publish_command(
    nickname: NicknameOption,
    lake: LakeOption = None,
    warehouse: WarehouseOption = None,
    json_output: JsonOption = False,
) -> None:
    """Move into the tables the files of batches a load committed but could not publish."""
    from ctsync.warehouse.lake.jobs import publish_lake

    def action() -> None:
        use_storage_settings(None)
        batches = publish_lake(warehouse or load_settings().warehouse, _lake(lake), nickname)
        files = sum(len(batch.moves) for batch in batches)
        if json_output:
            print_json({"batches": [batch.batch_id for batch in batches], "files": files})
        else:
            out().print(f"published {len(batches)} batch(es), {files} file(s)" if batches else "nothing to publish")

    run_command(action, json_output=json_output)


@lake_app.command("register")
def register_command(
    nickname: NicknameOption,
    lake: LakeOption = None,
    warehouse: WarehouseOption = None,
    spark_schema: Annotated[
        str | None,
        typer.Option(help="Schema to register in (default: the nickname's schema); catalog.schema on Unity Catalog."),
    ] = None,
    location: Annotated[
        str | None,
        typer.Option(help="The lake root as Spark names it, if not as ctsync does (s3a://bucket/lake)."),
    ] = None,
    spark_remote: Annotated[
        str | None,
        typer.Option(envvar="SPARK_REMOTE", show_envvar=True, help="A Spark Connect URL (sc://host:15002)."),
    ] = None,
    spark_master: Annotated[
        str, typer.Option(envvar="CTSYNC_SPARK_MASTER", show_envvar=True, help="Master of a session run here.")
    ] = "local[*]",
    spark_warehouse: Annotated[
        str,
        typer.Option(
            envvar="CTSYNC_SPARK_WAREHOUSE", show_envvar=True, help="spark.sql.warehouse.dir of that session."
        ),
    ] = "spark-warehouse",
    spark_metastore: Annotated[
        str,
        typer.Option(envvar="CTSYNC_SPARK_METASTORE", show_envvar=True, help="Its Derby metastore folder."),
    ] = "metastore_db",
    print_sql: Annotated[
        bool,
        typer.Option("--print-sql", help="Print the statements of a first registration instead (no Spark needed)."),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Register the lake's tables in a Spark catalog as external Parquet tables, and bring them up to date."""
    from ctsync.warehouse.lake.jobs import (
        SparkSettings,
        lake_registration_sql,
        register_lake_tables,
        spark_session,
    )

    def action() -> None:
        use_storage_settings(None)
        state = warehouse or load_settings().warehouse
        if print_sql:
            statements = lake_registration_sql(
                state, _lake(lake), nickname, spark_schema=spark_schema, location=location
            )
            if json_output:
                print_json({"statements": statements})
            else:
                for statement in statements:
                    out().print(statement + ";", soft_wrap=True)
            return
        settings = SparkSettings(spark_remote, spark_master, spark_warehouse, spark_metastore)
        done = register_lake_tables(
            state,
            _lake(lake),
            nickname,
            lambda: spark_session(settings),
            spark_schema=spark_schema,
            location=location,
        )
        if json_output:
            print_json({"tables": done})
            return
        table = Table(title="registered in Spark")
        for column in ("table", "action", "columns", "location"):
            table.add_column(column)
        for item in done:
            table.add_row(item.spark_table, item.action, str(item.columns), item.location)
        out().print(table)

    run_command(action, json_output=json_output)
