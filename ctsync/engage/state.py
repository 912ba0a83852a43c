"""The sync engine's own tables in the ``ctsync`` schema, the per-destination lock, and the
few statements that differ between DuckDB and PostgreSQL.

``sync_state``   what each destination has confirmed, per computation and person: the value
                 and the messageId (and outbox ``seq``) that confirmed it. The diff's baseline.
``sync_outbox``  every Identify call, stored with its final messageId and payload before it is
                 sent; ``status`` pending | sent | rejected | superseded.
``sync_runs``    one row per run with its counts.
``sync_locks``   at most one row per destination: the run that may write for it.

Everything goes through SQLAlchemy Core with portable SQL. The dialect-specific pieces are
the :class:`Dialect` helpers at the bottom of this module and the indexes that only a
server database needs (DuckDB relies on zone maps over ``seq``).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from ctsync.errors import CtsyncError, WarehouseBusy
from ctsync.warehouse.state import STATE_SCHEMA, ensure_state_schema, process_alive

logger = logging.getLogger(__name__)

metadata = sa.MetaData(schema=STATE_SCHEMA)

sync_state = sa.Table(
    "sync_state",
    metadata,
    sa.Column("destination", sa.String, nullable=False),
    sa.Column("computation_class", sa.String, nullable=False, comment="audience or trait"),
    sa.Column("computation_key", sa.String, nullable=False),
    sa.Column("id_type", sa.String, nullable=False, comment="user_id or anonymous_id: which id names the person"),
    sa.Column("person_id", sa.String, nullable=False),
    sa.Column("anonymous_id", sa.String, comment="anonymousId sent with the confirming message"),
    sa.Column("value", sa.String, nullable=False, comment="confirmed value as JSON text"),
    sa.Column("message_id", sa.String, nullable=False, comment="the message the destination acknowledged"),
    sa.Column("confirmed_seq", sa.BigInteger, nullable=False, comment="sync_outbox.seq of that message"),
    sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("destination", "computation_class", "computation_key", "id_type", "person_id"),
)

sync_outbox = sa.Table(
    "sync_outbox",
    metadata,
    sa.Column("seq", sa.BigInteger, nullable=False, comment="send order within the destination"),
    sa.Column("message_id", sa.String, nullable=False),
    sa.Column("destination", sa.String, nullable=False),
    sa.Column("computation_class", sa.String, nullable=False),
    sa.Column("computation_key", sa.String, nullable=False),
    sa.Column("id_type", sa.String, nullable=False),
    sa.Column("person_id", sa.String, nullable=False),
    sa.Column("user_id", sa.String),
    sa.Column("anonymous_id", sa.String),
    sa.Column("value", sa.String, nullable=False, comment="the value sent, as JSON text"),
    sa.Column("payload", sa.Text, nullable=False, comment="the full Identify payload as JSON text"),
    sa.Column("status", sa.String, nullable=False, comment="pending, sent, rejected or superseded"),
    sa.Column("handoffs", sa.Integer, nullable=False, comment="times handed to the destination (committed first)"),
    sa.Column(
        "unanswered",
        sa.Integer,
        nullable=False,
        server_default=sa.text("0"),
        comment="hand-offs without a definitive answer (timeout, failure, crash): it may have arrived",
    ),
    sa.Column("attempts", sa.Integer, nullable=False, comment="requests that carried it, as reported"),
    sa.Column("last_code", sa.String),
    sa.Column("last_reason", sa.String),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("run_id", sa.String, nullable=False, comment="the run that created it"),
    sa.Column("last_run_id", sa.String, comment="the run that last handed it over"),
)

sync_runs = sa.Table(
    "sync_runs",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("destination", sa.String, nullable=False),
    sa.Column("destination_kind", sa.String),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String, nullable=False, comment="running, succeeded, incomplete, failed, interrupted"),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("entered", sa.BigInteger, nullable=False, default=0),
    sa.Column("exited", sa.BigInteger, nullable=False, default=0),
    sa.Column("traits_changed", sa.BigInteger, nullable=False, default=0),
    sa.Column("sent", sa.BigInteger, nullable=False, default=0),
    sa.Column("rejected", sa.BigInteger, nullable=False, default=0),
    sa.Column("retried", sa.BigInteger, nullable=False, default=0),
    sa.Column("failed", sa.BigInteger, nullable=False, default=0),
    sa.Column("superseded", sa.BigInteger, nullable=False, default=0),
    sa.Column("pending", sa.BigInteger, nullable=False, default=0, comment="left unconfirmed at the end"),
    sa.Column("retired_audiences", sa.Integer, nullable=False, default=0),
    sa.Column("retired_traits", sa.Integer, nullable=False, default=0),
    sa.Column(
        "pruned",
        sa.BigInteger,
        nullable=False,
        default=0,
        server_default=sa.text("0"),
        comment="old messages no run needs again, deleted from the outbox",
    ),
    sa.Column(
        "values_left_out",
        sa.BigInteger,
        nullable=False,
        default=0,
        server_default=sa.text("0"),
        comment="values the destination cannot take, left out of the messages handed over",
    ),
    sa.Column("error", sa.Text),
)

sync_locks = sa.Table(
    "sync_locks",
    metadata,
    sa.Column("destination", sa.String, primary_key=True),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("host", sa.String, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
)

# A server database needs indexes for the lookups DuckDB answers with zone maps over seq. Each
# one is written again by every update of a message (handed over, sent), so there are few: the
# messages not sent yet by status (few, however long the outbox), and every message by seq.
# Nothing looks a message up by messageId, which is unique by construction (a run's prefix and
# the message's seq, unique per destination).
sa.Index(
    "sync_outbox_unsent",
    sync_outbox.c.destination,
    sync_outbox.c.status,
    sync_outbox.c.seq,
    postgresql_where=sync_outbox.c.status != "sent",
).ddl_if(dialect="postgresql")
sa.Index("sync_outbox_seq", sync_outbox.c.destination, sync_outbox.c.seq).ddl_if(dialect="postgresql")
# Anonymous keys are few; the diff looks for them on every run (a person who signs in changes key).
sa.Index(
    "sync_state_anonymous",
    sync_state.c.destination,
    sync_state.c.computation_class,
    sync_state.c.computation_key,
    sync_state.c.person_id,
    postgresql_where=sync_state.c.id_type == "anonymous_id",
).ddl_if(dialect="postgresql")

_REPLACED_INDEXES = ("sync_outbox_message_id", "sync_outbox_pending")
"""Indexes of earlier versions, dropped: every update of a message wrote them again."""

STATE = f"{STATE_SCHEMA}.sync_state"
OUTBOX = f"{STATE_SCHEMA}.sync_outbox"
RUNS = f"{STATE_SCHEMA}.sync_runs"
LOCKS = f"{STATE_SCHEMA}.sync_locks"

DIFF_WORK_MEM = "256MB"
"""PostgreSQL's work_mem for the diff's transaction: per sort or hash table, a few of them."""

STALE_LOCK_SECONDS = 900.0
"""A lock whose holder has not written for this long is taken over (its process is presumed gone)."""


def now() -> datetime:
    return datetime.now(UTC)


def create_state_tables(conn: sa.Connection) -> None:
    """Create the ``ctsync`` schema and the sync tables if they are missing; add new columns and indexes."""
    ensure_state_schema(conn)
    metadata.create_all(conn, checkfirst=True)
    if conn.dialect.name == "postgresql":  # the indexes only a server database has (see above)
        for table in metadata.sorted_tables:
            for index in table.indexes:
                index.create(conn, checkfirst=True)
        for name in _REPLACED_INDEXES:
            conn.execute(sa.text(f"drop index if exists {STATE_SCHEMA}.{name}"))
    present: dict[str, set[str]] = {}
    for table_name, column_name in conn.execute(
        sa.text("select table_name, column_name from information_schema.columns where table_schema = :schema"),
        {"schema": STATE_SCHEMA},
    ):
        present.setdefault(str(table_name), set()).add(str(column_name))
    for table in metadata.sorted_tables:
        for column in table.columns:
            if column.name in present.get(table.name, {column.name}):
                continue
            default = column.server_default
            clause = (
                f" default {default.arg.text}"
                if isinstance(default, sa.DefaultClause) and isinstance(default.arg, sa.TextClause)
                else ""
            )
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f"alter table {STATE_SCHEMA}.{table.name} add column {column.name} {kind}{clause}"))
            logger.info("added column %s.%s to the sync state", table.name, column.name)


# -- connecting -------------------------------------------------------------------------------

_DUCKDB_LOCK = re.compile(r"could not set lock on file", re.IGNORECASE)
_LOCK_PID = re.compile(r"\(PID (\d+)\)")


def connect(engine: sa.Engine, *, wait_seconds: float, what: str = "warehouse") -> sa.Connection:
    """A connection, waiting up to ``wait_seconds`` while another process holds a DuckDB file.

    DuckDB lets one process open a file for writing; the error it raises otherwise becomes
    WarehouseBusy (a CtsyncError) that says who holds it.
    """
    deadline = time.monotonic() + max(0.0, wait_seconds)
    delay = 0.05
    while True:
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            text = str(exc.orig) if exc.orig is not None else str(exc)
            if not _DUCKDB_LOCK.search(text):
                raise CtsyncError(f"cannot open the {what}: {text.splitlines()[0]}") from exc
            if time.monotonic() + delay > deadline:
                holder = _LOCK_PID.search(text)
                who = f"process {holder.group(1)}" if holder else "another process"
                raise WarehouseBusy(
                    f"the {what} {engine.url.database} is open for writing by {who} (DuckDB allows one "
                    f"writer per file); waited {wait_seconds:g} s. Run load, dbt build and sync one after "
                    "another, or retry when it has finished."
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
            continue
        try:
            with conn.begin():
                for statement in Dialect.of(conn).session_settings():
                    conn.execute(sa.text(statement))
        except BaseException:
            conn.close()
            raise
        return conn


# -- the per-destination lock -----------------------------------------------------------------


@dataclass(frozen=True)
class LockHolder:
    run_id: str
    host: str
    pid: int
    acquired_at: datetime
    heartbeat_at: datetime

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, started {self.acquired_at:%Y-%m-%d %H:%M:%S} UTC)"


def acquire_lock(
    conn: sa.Connection,
    destination: str,
    run_id: str,
    *,
    wait_seconds: float,
    stale_after: float = STALE_LOCK_SECONDS,
) -> list[LockHolder]:
    """Take the destination's lock for ``run_id``, waiting up to ``wait_seconds`` for a live holder.

    A holder whose process is gone (same host, pid not running) or that has not written for
    ``stale_after`` seconds is taken over; the taken-over holders are returned. A live holder
    that does not let go in time raises WarehouseBusy (a CtsyncError: trying later may work).
    """
    deadline = time.monotonic() + max(0.0, wait_seconds)
    host, pid = socket.gethostname(), os.getpid()
    delay = 0.05
    while True:
        taken_over: list[LockHolder] = []
        holder: LockHolder | None = None
        try:
            with conn.begin():
                row = conn.execute(sa.select(sync_locks).where(sync_locks.c.destination == destination)).one_or_none()
                if row is not None:
                    holder = LockHolder(row.run_id, row.host, row.pid, row.acquired_at, row.heartbeat_at)
                    if _is_stale(holder, stale_after):
                        taken_over.append(holder)
                        conn.execute(
                            sa.delete(sync_locks).where(
                                sync_locks.c.destination == destination, sync_locks.c.run_id == holder.run_id
                            )
                        )
                        holder = None
                if holder is None:
                    moment = now()
                    conn.execute(
                        sa.insert(sync_locks).values(
                            destination=destination,
                            run_id=run_id,
                            host=host,
                            pid=pid,
                            acquired_at=moment,
                            heartbeat_at=moment,
                        )
                    )
        except sa.exc.DBAPIError as exc:  # another process or thread took it at the same moment
            logger.debug("lock for %s: conflict while taking it (%s); retrying", destination, exc.orig)
            holder = None
            taken_over = []
            if time.monotonic() + delay > deadline:
                raise WarehouseBusy(
                    f"could not take the sync lock for destination {destination!r}: another sync is taking it"
                ) from None
            time.sleep(delay)
            continue
        if holder is None:
            for old in taken_over:
                logger.warning("took over the sync lock of %s for %s: its process is gone", old.describe(), destination)
            return taken_over
        if time.monotonic() + delay > deadline:
            raise WarehouseBusy(
                f"another sync to destination {destination!r} is running: {holder.describe()}; "
                f"waited {wait_seconds:g} s. Try again when it has finished."
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def heartbeat(conn: sa.Connection, destination: str, run_id: str) -> None:
    """Say the lock holder is alive (inside the caller's transaction)."""
    conn.execute(
        sa.update(sync_locks)
        .where(sync_locks.c.destination == destination, sync_locks.c.run_id == run_id)
        .values(heartbeat_at=now())
    )


def release_lock(conn: sa.Connection, destination: str, run_id: str) -> None:
    with conn.begin():
        conn.execute(
            sa.delete(sync_locks).where(sync_locks.c.destination == destination, sync_locks.c.run_id == run_id)
        )


def _is_stale(holder: LockHolder, stale_after: float) -> bool:
    if holder.host == socket.gethostname() and not process_alive(holder.pid):
        return True
    heartbeat_at = holder.heartbeat_at
    if heartbeat_at.tzinfo is None:
        heartbeat_at = heartbeat_at.replace(tzinfo=UTC)
    return (now() - heartbeat_at).total_seconds() > stale_after


# -- dialect-specific SQL ---------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """The statements that differ between DuckDB and PostgreSQL, in one place."""

    name: str

    @classmethod
    def of(cls, conn: sa.Connection) -> Dialect:
        name = conn.dialect.name
        if name not in ("duckdb", "postgresql"):
            raise CtsyncError(f"the sync state needs DuckDB or PostgreSQL, not {name}")
        return cls(name)

    def session_settings(self) -> list[str]:
        """Statements run once on each connection of a sync."""
        if self.name == "duckdb":
            # A sync commits after every request. DuckDB checkpoints whenever the WAL passes 16 MB,
            # and each checkpoint rewrites changed row groups, costing more as the file grows (a
            # third of the sending time at 1M users). The WAL is just as durable; the file is
            # checkpointed when the connection closes.
            return ["set checkpoint_threshold = '256MB'"]
        # The sync's statements are either bulk set operations or small per-request updates;
        # compiling them with JIT costs more (a quarter of a second per diff) than it saves.
        return ["set jit = off"]

    def diff_settings(self) -> list[str]:
        """Statements run at the start of the diff's transaction (they end with it)."""
        if self.name == "duckdb":
            return []
        # The diff hashes and sorts every current value; with the default 4 MB they go to disk.
        return [f"set local work_mem = '{DIFF_WORK_MEM}'"]

    def presorted(self, relation: str, order: str) -> str:
        """``relation`` (a name) as a subquery sorted by ``order``, where that saves work.

        PostgreSQL then folds duplicates on the sorted rows and numbers them in the same order in
        one sort, instead of a hash table and a sort; DuckDB's hash aggregate does not need it.
        """
        return relation if self.name == "duckdb" else f"(select * from {relation} order by {order})"

    def analyze(self, table: str) -> list[str]:
        """Statements giving the planner the size and contents of a table just filled (a temporary
        table, which PostgreSQL's autovacuum never analyses); DuckDB keeps its statistics as it writes."""
        return [] if self.name == "duckdb" else [f"analyze {table}"]

    def json_string(self, expression: str) -> str:
        """SQL for ``expression`` (text) as a JSON string literal, quotes and escapes included."""
        return f"cast(to_json({expression}) as varchar)"

    def new_message_id(self, seq: str) -> str:
        """SQL for the ``personas_`` messageId (41 characters) of a new message numbered ``seq``.

        Binds ``message_id_prefix`` (:func:`ctsync.engage.payloads.message_id_prefix`); 14 digits
        of ``seq`` follow it (a destination would need 10^14 messages to run out).
        """
        return f"'personas_' || :message_id_prefix || lpad(cast({seq} as varchar), 14, '0')"

    def bytewise(self, expression: str) -> str:
        """``expression`` (text) compared byte by byte, for sorting and min/max.

        PostgreSQL compares text by the database collation, which can neither use abbreviated
        keys for sorting nor compare with memcmp; the order only needs to be deterministic.
        """
        return expression if self.name == "duckdb" else f'({expression} collate "C")'

    def computation_id(self, prefix: str, key_expression: str) -> str:
        """SQL twin of :func:`ctsync.engage.payloads.computation_id`."""
        return f"'{prefix}' || substr(md5({key_expression}), 1, 24)"

    def in_list(self, expression: str, parameter: str, element_type: str = "bigint") -> str:
        """``expression`` is one of the values of the list bound to ``:parameter``."""
        if self.name == "duckdb":
            return f"{expression} in (select unnest(:{parameter}))"
        # psycopg2 binds a Python list as an ARRAY literal. IN (SELECT unnest(...)) is planned as a
        # nested loop over every row and element; = any(...) of an array of the column's own type
        # is a hash lookup (of integer[] against a bigint column, a scan of the array per row).
        return f"{expression} = any(cast(:{parameter} as {element_type}[]))"

    def upsert_state(self, state: str, source: str, *, confirmed_at: str = ":at") -> str:
        """Statement writing ``source``'s rows (outbox columns, ``seq``) into the confirmed state.

        A row only replaces a confirmation by an older message (lower seq). ``confirmed_at`` is
        the SQL of the confirmation time: the ``:at`` bind, or a column of ``source`` (``o.``).
        """
        if self.name == "duckdb":
            # MERGE is about 1.5x faster than INSERT .. ON CONFLICT on DuckDB's ART index.
            return f"""
                merge into {state} as s
                using ({source}) as o
                on s.destination = o.destination and s.computation_class = o.computation_class
                   and s.computation_key = o.computation_key and s.id_type = o.id_type
                   and s.person_id = o.person_id
                when matched and s.confirmed_seq < o.seq then update set
                    anonymous_id = o.anonymous_id, value = o.value, message_id = o.message_id,
                    confirmed_seq = o.seq, confirmed_at = {confirmed_at}
                when not matched then insert (
                    destination, computation_class, computation_key, id_type, person_id, anonymous_id,
                    value, message_id, confirmed_seq, confirmed_at
                ) values (
                    o.destination, o.computation_class, o.computation_key, o.id_type, o.person_id,
                    o.anonymous_id, o.value, o.message_id, o.seq, {confirmed_at}
                )
            """
        return f"""
            insert into {state} as s (
                destination, computation_class, computation_key, id_type, person_id, anonymous_id,
                value, message_id, confirmed_seq, confirmed_at
            )
            select destination, computation_class, computation_key, id_type, person_id, anonymous_id,
                   value, message_id, seq, {confirmed_at}
            from ({source}) as o
            on conflict (destination, computation_class, computation_key, id_type, person_id) do update set
                anonymous_id = excluded.anonymous_id,
                value = excluded.value,
                message_id = excluded.message_id,
                confirmed_seq = excluded.confirmed_seq,
                confirmed_at = excluded.confirmed_at
            where s.confirmed_seq < excluded.confirmed_seq
        """
