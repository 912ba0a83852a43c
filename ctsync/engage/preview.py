"""What a dry run shows of the diff: the first changes, and the whole diff written to a file.

The file is CSV with a header line: ``change`` (entered, exited, changed), ``computation_class``,
``computation_key``, ``user_id``, ``anonymous_id``, ``value`` (the JSON text that would be sent)
and ``message`` (``new``, or ``resend``: an earlier message goes again with its messageId), one
line per change, in the order of the preview. The database writes it (DuckDB's ``COPY ... TO``,
PostgreSQL's ``COPY ... TO STDOUT`` streamed into the file), so its size does not matter.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from ctsync.engage.diff import CHANGES
from ctsync.engage.state import Dialect
from ctsync.engage.summary import ChangePreview
from ctsync.errors import CtsyncError


def _changes_query(dialect: Dialect) -> str:
    b = dialect.bytewise
    return f"""
        select change, computation_class, computation_key, user_id, anonymous_id, value,
               case when reuse_message_id is null then 'new' else 'resend' end as message
        from {CHANGES}
        order by {b("change")}, {b("computation_class")}, {b("computation_key")}, {b("person_id")}
    """


def preview_changes(conn: sa.Connection, dialect: Dialect, limit: int) -> list[ChangePreview]:
    """The first ``limit`` changes of ``ctsync_changes``."""
    rows = conn.execute(sa.text(f"{_changes_query(dialect)} limit :limit"), {"limit": limit}).all()
    return [
        ChangePreview(
            str(r.change),
            str(r.computation_class),
            str(r.computation_key),
            r.user_id,
            r.anonymous_id,
            str(r.value),
            r.message == "resend",
        )
        for r in rows
    ]


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """The absolute path of a diff file to write; CtsyncError when its folder does not exist."""
    resolved = Path(path).expanduser().resolve()
    if resolved.is_dir():
        raise CtsyncError(f"--output {path} is a folder: name a file in it, such as changes.csv")
    if not resolved.parent.is_dir():
        raise CtsyncError(f"cannot write {path}: the folder {resolved.parent} does not exist")
    return resolved


def write_changes(conn: sa.Connection, dialect: Dialect, path: Path) -> None:
    """Write every change of ``ctsync_changes`` to ``path`` as CSV (see the module docstring)."""
    query = _changes_query(dialect)
    try:
        if dialect.name == "duckdb":
            literal = str(path).replace("'", "''")
            conn.exec_driver_sql(f"copy ({query}) to '{literal}' (format csv, header true)")
            return
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            with path.open("w", encoding="utf-8", newline="") as out:
                cursor.copy_expert(f"copy ({query}) to stdout with (format csv, header true)", out)
        finally:
            cursor.close()
    except OSError as exc:
        raise CtsyncError(f"cannot write the diff to {path}: {exc}") from exc
    except sa.exc.DBAPIError as exc:
        raise CtsyncError(f"cannot write the diff to {path}: {str(exc.orig).splitlines()[0]}") from exc
