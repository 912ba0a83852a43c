"""SQLAlchemy access to ctsync's own state in the warehouse (export jobs, sync state, outbox).

Everything ctsync keeps for itself lives in one schema, ``ctsync``, next to the data, so a
server warehouse (PostgreSQL) can hold it as well as the embedded DuckDB file.
"""

from __future__ import annotations

import os
import re
import sys

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from ctsync.errors import CtsyncError, WarehouseBusy
from ctsync.warehouse.connection import WarehouseTarget, parse_warehouse

STATE_SCHEMA = "ctsync"


def state_engine(warehouse: str | WarehouseTarget) -> sa.Engine:
    """An engine on the warehouse; connections are not pooled, so no file stays locked."""
    target = warehouse if isinstance(warehouse, WarehouseTarget) else parse_warehouse(warehouse)
    try:
        engine = sa.create_engine(target.sqlalchemy_url, poolclass=NullPool)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise CtsyncError(f"cannot use the warehouse {target.describe()}: {exc}") from exc
    if target.kind == "duckdb":

        @sa.event.listens_for(engine, "connect")
        def _utc(dbapi_connection: object, _record: object) -> None:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("set TimeZone = 'UTC'")
            cursor.close()

    return engine


def ensure_state_schema(connection: sa.Connection) -> None:
    connection.execute(sa.text(f'create schema if not exists "{STATE_SCHEMA}"'))


_LOCKED = re.compile(r"could not set lock on file|database is locked|conflicting lock", re.IGNORECASE)


def cannot_open(what: str, error: BaseException) -> CtsyncError:
    """The error to raise when the warehouse cannot be opened: WarehouseBusy when another writer holds it."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()[0] if str(error).strip() else repr(error)
    if _LOCKED.search(str(error)):
        return WarehouseBusy(
            f"cannot open the {what}: another process is writing to it (DuckDB allows one writer at a time); "
            f"run load, dbt build and sync one after another, or wait and try again ({text})"
        )
    return CtsyncError(f"cannot open the {what}: {text}")


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (the holder of a lock or a run)."""
    if sys.platform == "win32":  # os.kill would end the process there; callers rely on age instead
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
