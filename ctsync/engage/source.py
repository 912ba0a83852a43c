"""Where the sync reads the engage relations when the database that keeps its state does not hold them.

By default the sync reads ``engage.*`` in the warehouse it keeps its state in (DuckDB or PostgreSQL),
where dbt built them. When dbt builds on Spark (or Databricks), the relations are in Spark's catalog, and
the sync keeps its state in a small state database (``--warehouse``: a DuckDB file or PostgreSQL, the
lake's state database). ``--engage-source`` (``CTSYNC_ENGAGE_SOURCE``) says where to read them:

``spark`` or ``spark:SCHEMA``
    A Spark session in this process with the settings of dbt's ``spark`` target (``CTSYNC_SPARK_MASTER``,
    ``CTSYNC_SPARK_WAREHOUSE``, ``CTSYNC_SPARK_METASTORE``), or the session already running in it. Spark
    evaluates the relations (on Spark they are views over the engage stores) and returns Arrow.
``sc://HOST:PORT[/;params]``
    The same through Spark Connect (Databricks Connect included); needs ``pyspark[connect]``.
a folder or URL
    One Parquet folder per relation (``ROOT/engage_audience_memberships/...``), as Spark writes them with
    ``insert overwrite directory '.../engage_audience_memberships' using parquet select ...``; read with
    ``pyarrow.dataset`` batch by batch (Hive partition folders allowed), without Spark.

Only the columns the sync reads are read (:data:`RELATIONS`). They are copied once per run into the state
database, so every statement of the run sees one snapshot and the diff's SQL runs unchanged on them:

* DuckDB: tables of an in-memory database attached to the sync's connection, schema ``engage_source``
  (put on the connection's search path); Arrow batches stream into them.
* PostgreSQL: temporary tables (the session's ``pg_temp_N`` schema), filled with ``COPY ... FROM STDIN``
  from CSV that Arrow writes batch by batch, then analysed. They go with the connection.
"""

from __future__ import annotations

import io
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyarrow as pa
import sqlalchemy as sa

from ctsync.engage.diff import EMAILS_TABLE, INPUT_TABLES
from ctsync.errors import CtsyncError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

ENGAGE_SOURCE_ENV = "CTSYNC_ENGAGE_SOURCE"

DUCKDB_CATALOG = "ctsync_engage_source"
"""The in-memory database attached to a DuckDB state connection for the run."""
DUCKDB_SCHEMA = "engage_source"
"""Its schema holding the relations (the ``engage_schema`` the diff reads)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}")
_ARROW_VIEW = "ctsync_engage_arrow"


@dataclass(frozen=True)
class Relation:
    """An engage relation the sync reads, with the columns it reads and their types."""

    name: str
    columns: dict[str, pa.DataType]
    required: bool = True
    optional_columns: frozenset[str] = frozenset()
    """Columns copied when the relation has them (the diff looks for them in information_schema)."""


RELATIONS = (
    Relation("engage_audiences", {"audience_key": pa.string(), "include_anonymous": pa.bool_()}),
    Relation(
        "engage_audience_memberships",
        {"audience_key": pa.string(), "user_id": pa.string(), "anonymous_id": pa.string(), "is_member": pa.bool_()},
    ),
    Relation(
        "engage_traits",
        {"trait_key": pa.string(), "include_anonymous": pa.bool_()},
        optional_columns=frozenset({"include_anonymous"}),
    ),
    Relation(
        "engage_computed_traits",
        {"trait_key": pa.string(), "user_id": pa.string(), "anonymous_id": pa.string(), "value": pa.string()},
    ),
    Relation(EMAILS_TABLE, {"user_id": pa.string(), "email": pa.string()}, required=False),
)
assert {relation.name for relation in RELATIONS if relation.required} == set(INPUT_TABLES)

RelationReader = Callable[[Relation], "pa.RecordBatchReader | None"]
"""Reads one relation (its columns the source has, in :data:`RELATIONS`' order); None: an optional
relation the source does not have."""


class EngageSource(ABC):
    """Somewhere outside the state database that holds the engage relations."""

    @abstractmethod
    def describe(self) -> str:
        """Where, for messages and run summaries (no credentials)."""

    @abstractmethod
    def opened(self) -> Any:
        """A context manager giving a :data:`RelationReader`."""


@dataclass(frozen=True)
class SparkSource(EngageSource):
    """The relations of ``schema`` in a Spark catalog: a session in this process, or Spark Connect."""

    schema: str = "engage"
    remote: str | None = None
    """A Spark Connect URL (``sc://host:15002``); None: a session in this process."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """``CTSYNC_SPARK_*`` for a session started here."""

    def describe(self) -> str:
        if self.remote is None:
            return f"spark ({self.schema})"
        parts = urlsplit(self.remote)
        return f"sc://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''} ({self.schema})"

    @contextmanager
    def opened(self) -> Iterator[RelationReader]:
        try:
            spark, owned = self._session()
        except CtsyncError:
            raise
        except Exception as exc:  # Java missing, a metastore another process holds, no server there
            raise CtsyncError(f"cannot start Spark for {self.describe()}: {_first_line(exc)}") from exc
        try:
            yield lambda relation: self._read_checked(spark, relation)
        finally:
            if owned:
                spark.stop()

    def _read_checked(self, spark: SparkSession, relation: Relation) -> pa.RecordBatchReader | None:
        try:
            return self._read(spark, relation)
        except CtsyncError:
            raise
        except Exception as exc:  # Spark's own errors (AnalysisException, Py4JJavaError, Connect's)
            raise CtsyncError(f"Spark could not read {self.schema}.{relation.name}: {_first_line(exc)}") from exc

    def _session(self) -> tuple[SparkSession, bool]:
        """The session to read with, and whether this source started it (and so stops it)."""
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise CtsyncError(
                "reading the engage relations from Spark needs pyspark: pip install 'ctsync[spark]' (and Java 17 "
                "or 21 for a session here); or give --engage-source a folder of their Parquet files"
            ) from None
        if self.remote is not None:
            try:
                return SparkSession.builder.remote(self.remote).getOrCreate(), True
            except ImportError as exc:
                raise CtsyncError(
                    f"Spark Connect needs pyspark's connect client: pip install 'pyspark[connect]' ({exc})"
                ) from None
        active = SparkSession.getActiveSession()
        if active is not None:
            return active, False
        get = self.settings.get
        metastore = get("CTSYNC_SPARK_METASTORE") or "metastore_db"
        session = (
            SparkSession.builder.master(get("CTSYNC_SPARK_MASTER") or "local[*]")
            .appName("ctsync-sync")
            .config("spark.sql.warehouse.dir", get("CTSYNC_SPARK_WAREHOUSE") or "spark-warehouse")
            .config("spark.hadoop.javax.jdo.option.ConnectionURL", f"jdbc:derby:;databaseName={metastore};create=true")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .enableHiveSupport()
            .getOrCreate()
        )
        session.sparkContext.setLogLevel(get("CTSYNC_SPARK_LOG_LEVEL") or "ERROR")
        return session, True

    def _read(self, spark: SparkSession, relation: Relation) -> pa.RecordBatchReader | None:
        name = f"{self.schema}.{relation.name}"
        if not spark.catalog.tableExists(name):
            if relation.required:
                raise CtsyncError(
                    f"Spark has no {name}: build the audiences and traits on Spark first "
                    "(`ctsync build --target spark` or `dbt build --target spark`), or name the schema "
                    "they are in (--engage-source spark:SCHEMA)"
                )
            return None
        frame = spark.table(name)
        present = {column.lower(): column for column in frame.columns}
        columns = _columns_to_read(relation, present, f"Spark's {name}")
        table = frame.select(*(present[column] for column in columns)).toArrow()
        return conform(table.to_reader(), relation, columns)


@dataclass(frozen=True)
class ParquetSource(EngageSource):
    """One Parquet folder per relation under ``root`` (a local folder or an fsspec URL)."""

    root: str

    def describe(self) -> str:
        parts = urlsplit(self.root)
        if parts.scheme and parts.netloc and "@" in parts.netloc:
            return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[1]}{parts.path}"
        return self.root

    @contextmanager
    def opened(self) -> Iterator[RelationReader]:
        filesystem, base = _filesystem(self.root)
        yield lambda relation: self._read(filesystem, base, relation)

    def _read(self, filesystem: Any, base: str, relation: Relation) -> pa.RecordBatchReader | None:
        import pyarrow.dataset as ds
        import pyarrow.fs as pafs

        path = f"{base.rstrip('/')}/{relation.name}"
        kind = filesystem.get_file_info(path).type
        if kind != pafs.FileType.Directory:
            if not relation.required and kind == pafs.FileType.NotFound:
                return None
            raise CtsyncError(
                f"{self.describe().rstrip('/')}/{relation.name} is not a folder of Parquet files: --engage-source "
                f"PATH needs one folder per engage relation ({', '.join(INPUT_TABLES)}; {EMAILS_TABLE} optional)"
            )
        try:
            # Partition values stay text (a key "007" is not the number 7).
            dataset = ds.dataset(
                path,
                filesystem=filesystem,
                format="parquet",
                partitioning=ds.HivePartitioning.discover(infer_dictionary=True),
            )
        except (pa.ArrowException, OSError) as exc:
            raise CtsyncError(f"cannot read the Parquet files of {relation.name}: {exc}") from exc
        if not dataset.files:  # an empty relation: Spark writes no data file
            return pa.RecordBatchReader.from_batches(_schema(relation, _names(relation)), [])
        present = {name.lower(): name for name in dataset.schema.names}
        columns = _columns_to_read(relation, present, f"the Parquet files of {relation.name}")
        scanner = dataset.scanner(columns=[present[column] for column in columns], batch_size=65_536)
        return conform(scanner.to_reader(), relation, columns)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _filesystem(root: str) -> tuple[Any, str]:
    """A pyarrow filesystem and the path on it: local for a folder, else fsspec's for the URL's scheme."""
    import pyarrow.fs as pafs

    if "://" not in root or root.startswith("file://"):
        local = root[len("file://") :] if root.startswith("file://") else root
        return pafs.LocalFileSystem(), os.path.abspath(local)
    import fsspec

    try:
        filesystem, path = fsspec.core.url_to_fs(root)
    except (ImportError, ValueError) as exc:
        raise CtsyncError(f"cannot open {ParquetSource(root).describe()}: {exc}") from exc
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), path


def _names(relation: Relation) -> list[str]:
    return [name for name in relation.columns if name not in relation.optional_columns]


def _columns_to_read(relation: Relation, present: Mapping[str, str], where: str) -> list[str]:
    missing = [name for name in _names(relation) if name not in present]
    if missing:
        raise CtsyncError(f"{where} has no column {', '.join(missing)}: is it dbt's {relation.name}?")
    return [name for name in relation.columns if name in present]


def _schema(relation: Relation, columns: list[str]) -> pa.Schema:
    return pa.schema([(name, relation.columns[name]) for name in columns])


def conform(reader: pa.RecordBatchReader, relation: Relation, columns: list[str]) -> pa.RecordBatchReader:
    """``reader``'s batches with the relation's column names and types (dictionary partition values
    decoded, large strings as strings), batch by batch."""
    schema = _schema(relation, columns)

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            arrays = []
            for index, name in enumerate(columns):
                array = batch.column(index)
                if pa.types.is_dictionary(array.type):
                    array = array.dictionary_decode()
                try:
                    arrays.append(array.cast(relation.columns[name]))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise CtsyncError(f"{relation.name}.{name} is {array.type}, not {relation.columns[name]}") from exc
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def parse_engage_source(value: str, environ: Mapping[str, str] | None = None) -> EngageSource:
    """``spark``, ``spark:SCHEMA``, ``sc://...`` or a folder / URL of Parquet folders (see the module)."""
    text = value.strip()
    env = os.environ if environ is None else environ
    settings = {key: env[key] for key in env if key.startswith("CTSYNC_SPARK_")}
    if not text:
        raise CtsyncError("the engage source is empty: spark, spark:SCHEMA, sc://HOST:PORT or a folder of Parquet")
    if text.lower().startswith("sc://"):
        return SparkSource(remote=text, settings=settings)
    if text.lower() == "spark" or text.lower().startswith("spark:"):
        schema = text.split(":", 1)[1].strip() if ":" in text else "engage"
        if not _NAME.fullmatch(schema):
            raise CtsyncError(f"spark:SCHEMA needs a schema name (engage, or catalog.engage), not {schema!r}")
        return SparkSource(schema=schema, settings=settings)
    return ParquetSource(text)


def resolve_engage_source(
    value: str | EngageSource | None, environ: Mapping[str, str] | None = None
) -> EngageSource | None:
    """``value``, else ``CTSYNC_ENGAGE_SOURCE``, parsed; None: the warehouse's own ``engage`` schema."""
    if isinstance(value, EngageSource):
        return value
    env = os.environ if environ is None else environ
    text = value if value is not None else env.get(ENGAGE_SOURCE_ENV, "")
    return parse_engage_source(text, env) if text.strip() else None


@dataclass
class ExposedEngage:
    """The relations copied into the state database for one run."""

    source: str
    schema: str
    """Where the diff finds them (``engage_schema``)."""
    rows: dict[str, int]
    seconds: float


def expose(conn: sa.Connection, source: EngageSource) -> ExposedEngage:
    """Copy the engage relations of ``source`` into the state database behind ``conn`` for this run."""
    started = time.perf_counter()
    rows: dict[str, int] = {}
    name = conn.dialect.name
    if name not in ("duckdb", "postgresql"):
        raise CtsyncError(f"the sync state needs DuckDB or PostgreSQL, not {name}")
    with source.opened() as read:
        if name == "duckdb":
            _attach_duckdb(conn)
        for relation in RELATIONS:
            reader = read(relation)
            if reader is None:
                continue
            if name == "duckdb":
                rows[relation.name] = _copy_duckdb(conn, relation, reader)
            else:
                rows[relation.name] = _copy_postgres(conn, relation, reader)
    schema = _search_duckdb(conn) if name == "duckdb" else _temp_schema(conn)
    exposed = ExposedEngage(source.describe(), schema, rows, time.perf_counter() - started)
    logger.info(
        "read the engage relations from %s: %s in %.2f s",
        exposed.source,
        ", ".join(f"{table} {count:,}" for table, count in rows.items()),
        exposed.seconds,
    )
    return exposed


def _driver(conn: sa.Connection) -> Any:
    """The DB-API connection under ``conn`` (DuckDB's, to register Arrow; psycopg2's, to COPY)."""
    driver = conn.connection.driver_connection
    if driver is None:
        raise CtsyncError("the state database's connection is closed")
    return driver


def _attach_duckdb(conn: sa.Connection) -> None:
    raw = _driver(conn)
    raw.execute(f"attach if not exists ':memory:' as {DUCKDB_CATALOG}")
    raw.execute(f"create schema if not exists {DUCKDB_CATALOG}.{DUCKDB_SCHEMA}")


def _copy_duckdb(conn: sa.Connection, relation: Relation, reader: pa.RecordBatchReader) -> int:
    """Stream ``reader`` into a table of the attached database; its row count."""
    raw = _driver(conn)
    table = f"{DUCKDB_CATALOG}.{DUCKDB_SCHEMA}.{relation.name}"
    raw.register(_ARROW_VIEW, reader)
    try:
        raw.execute(f"create or replace table {table} as select * from {_ARROW_VIEW}")
    finally:
        raw.unregister(_ARROW_VIEW)
    return int(raw.execute(f"select count(*) from {table}").fetchall()[0][0])


def _search_duckdb(conn: sa.Connection) -> str:
    """Put the attached schema on the connection's search path, so ``engage_source.<table>`` finds it."""
    raw = _driver(conn)
    raw.execute(f"set search_path = 'main,{DUCKDB_CATALOG}.{DUCKDB_SCHEMA}'")
    return DUCKDB_SCHEMA


_PG_TYPES = {pa.string(): "text", pa.bool_(): "boolean"}


def _copy_postgres(conn: sa.Connection, relation: Relation, reader: pa.RecordBatchReader) -> int:
    """A temporary table filled from ``reader`` with COPY (CSV, streamed), analysed; its row count."""
    columns = reader.schema.names
    definition = ", ".join(f'"{name}" {_PG_TYPES[relation.columns[name]]}' for name in columns)
    stream = _CsvStream(reader)
    with conn.begin():
        conn.exec_driver_sql(f"drop table if exists pg_temp.{relation.name}")
        conn.exec_driver_sql(f"create temporary table {relation.name} ({definition})")
        with _driver(conn).cursor() as cursor:
            listed = ", ".join(f'"{name}"' for name in columns)
            cursor.copy_expert(
                f"copy pg_temp.{relation.name} ({listed}) from stdin with (format csv)", stream, size=1 << 20
            )
        conn.exec_driver_sql(f"analyze pg_temp.{relation.name}")
    return stream.rows


def _temp_schema(conn: sa.Connection) -> str:
    """The session's temporary schema (``pg_temp_3``): information_schema names the tables there."""
    found = conn.execute(sa.text("select nspname from pg_namespace where oid = pg_my_temp_schema()")).scalar()
    if conn.in_transaction():
        conn.commit()
    if not found:
        raise CtsyncError("PostgreSQL gave the sync no temporary schema for the engage relations")
    return str(found)


class _CsvStream(io.RawIOBase):
    """The batches of a reader as CSV (no header), read as a file by ``COPY ... FROM STDIN``.

    Arrow quotes every text value and writes NULL as nothing, which is how PostgreSQL's CSV tells an
    empty string (``""``) from NULL. PostgreSQL text cannot hold NUL: it becomes U+FFFD, as the loader
    stores it.
    """

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        super().__init__()
        self._batches = iter(reader)
        self._buffer = bytearray()
        self.rows = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        while size < 0 or len(self._buffer) < size:
            batch = next(self._batches, None)
            if batch is None:
                break
            arrays = [
                pc.replace_substring(array, "\x00", "\ufffd") if pa.types.is_string(array.type) else array
                for array in batch.columns
            ]
            sink = io.BytesIO()
            pacsv.write_csv(
                pa.RecordBatch.from_arrays(arrays, schema=batch.schema),
                sink,
                write_options=pacsv.WriteOptions(include_header=False),
            )
            self._buffer += sink.getvalue()
            self.rows += batch.num_rows
        if size < 0:
            size = len(self._buffer)
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        return chunk
