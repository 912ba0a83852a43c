"""Which warehouse a URL names, and opening it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb

from ctsync.errors import CtsyncError, WarehouseBusy


@dataclass(frozen=True)
class WarehouseTarget:
    kind: Literal["duckdb", "postgres"]
    location: str
    """File path for DuckDB, the full URL for PostgreSQL."""

    @property
    def sqlalchemy_url(self) -> str:
        if self.kind == "duckdb":
            return f"duckdb:///{self.location}"
        return "postgresql+psycopg2://" + self.location.split("://", 1)[1]

    def describe(self) -> str:
        """Where the data goes, without credentials."""
        if self.kind == "duckdb":
            return self.location
        rest = self.location.split("://", 1)[1]
        host = rest.rsplit("@", 1)[-1]
        return f"postgresql://{host}"


def parse_warehouse(value: str) -> WarehouseTarget:
    """``warehouse.duckdb``, ``duckdb:///path.duckdb``, ``duckdb:////abs/path``, ``postgresql://…``."""
    value = value.strip()
    if not value:
        raise CtsyncError("the warehouse is empty: set --warehouse or CTSYNC_WAREHOUSE")
    lowered = value.lower()
    if lowered.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://")):
        return WarehouseTarget("postgres", "postgresql://" + value.split("://", 1)[1])
    if lowered.startswith("duckdb://"):
        path = value[len("duckdb://") :]
        if path.startswith("/"):
            path = path[1:]  # duckdb:///rel.duckdb -> rel.duckdb; duckdb:////abs -> /abs
        if not path or path == ":memory:":
            raise CtsyncError("a duckdb:/// URL needs a file path, e.g. duckdb:///warehouse.duckdb")
        return WarehouseTarget("duckdb", os.path.abspath(path))
    if "://" in value:
        raise CtsyncError(
            f"unsupported warehouse URL {value.split('://', 1)[0]}://…; "
            "use a DuckDB file path, duckdb:///path.duckdb or postgresql://user@host/db"
        )
    return WarehouseTarget("duckdb", os.path.abspath(value))


MEMORY_BASE_MB = 256
MEMORY_PER_THREAD_MB = 256
"""A load's DuckDB memory limit is ``MEMORY_BASE_MB`` plus ``MEMORY_PER_THREAD_MB`` per DuckDB thread (768 MB on
2 cores). Past it DuckDB spills to disk, so a load's memory stays bounded whatever the size of the export and
of the warehouse (docs/decisions.md, "Memory"). Each thread of DuckDB's JSON reader holds buffers that must fit
the longest line a load accepts (32 MiB): a 512 MB limit on 2 threads already refused such a line."""


def connect_duckdb(path: str, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB warehouse file with the session settings the loader relies on.

    Always with DuckDB's default row group size: every process that writes the file (the loader,
    dbt, the sync, an analyst's session) must use the same one (docs/decisions.md, "Row groups").
    """
    if not read_only:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(path, read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise WarehouseBusy(
                f"{path} is open for writing by another process (DuckDB allows one writer); "
                "wait for it to finish: run load, dbt build and sync one after another"
            ) from exc
        raise CtsyncError(f"cannot open the warehouse {path}: {exc}") from exc
    configure_session(con)
    return con


def configure_session(con: duckdb.DuckDBPyConnection) -> None:
    """UTC, no DuckDB progress bar on the terminal (ctsync draws its own), bounded memory."""
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    threads = int(con.execute("select current_setting('threads')").fetchone()[0])  # type: ignore[index]
    con.execute(f"set memory_limit = '{MEMORY_BASE_MB + MEMORY_PER_THREAD_MB * threads}MB'")
