"""Engage sync benchmark: 1M users x 10 audiences, 1% churn, on DuckDB and on PostgreSQL.

    .venv/bin/python benchmarks/sync.py                  # 1M users, 3 churn rounds
    .venv/bin/python benchmarks/sync.py --users 100000   # quicker
    .venv/bin/python benchmarks/sync.py --postgres postgresql://user@host/db   # also PostgreSQL

1. Builds ``engage.engage_audiences`` and ``engage.engage_audience_memberships`` in a fresh
   DuckDB file: 10 audiences with 1% to 50% of the users each. With ``--postgres`` (default:
   ``CTSYNC_TEST_POSTGRES_URL``) the same tables are copied into a fresh database on that server
   (analysed, as autovacuum would), dropped at the end.
2. First sync to a JSON-lines file under the destination name ``bench`` (sets the baseline), on
   each warehouse in turn; ``--first-syncs N`` repeats it from an empty ``ctsync`` schema.
3. Each round: flips the membership of 1% of the users in every audience (entries and exits),
   the same flips on both warehouses, then syncs ``bench`` again on each warehouse in turn (the
   order alternates), this time to a Segment-compatible test server running in its own process
   (``tests.servers.segment``, a fresh one per sync: it keeps every message in memory and slows
   down as that grows), and records the diff + outbox time and the send rate.

Prints the medians next to the targets (diff + outbox <= 10 s, sending >= 20,000 Identify/s) and,
with PostgreSQL, each PostgreSQL median over DuckDB's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from ctsync.destinations import Destination, JsonlFileDestination, SegmentHttpClient  # noqa: E402
from ctsync.engage.run import SyncSummary, sync_destination  # noqa: E402

AUDIENCE_PERCENT = (1, 2, 5, 10, 15, 20, 25, 30, 40, 50)
WRITE_KEY = "bench-write-key"
DIFF_TARGET_SECONDS = 10.0
SEND_TARGET_RATE = 20_000.0


def build_engage_tables(path: Path, users: int) -> int:
    """The four engage tables (no traits); returns the number of memberships."""
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema if not exists engage")
        con.execute(
            """
            create or replace table engage.engage_audiences as
            select 'audience_' || lpad(cast(i as varchar), 2, '0') as audience_key,
                   'Audience ' || i as audience_name,
                   false as include_anonymous,
                   'audience_' || i as model_name,
                   percent
            from (select unnest(range(?)) as i, unnest(?) as percent)
            """,
            [len(AUDIENCE_PERCENT), list(AUDIENCE_PERCENT)],
        )
        con.execute(
            """
            create or replace table engage.base_memberships as
            select 'user_' || u as user_id, 'anon_' || u as anonymous_id, a.audience_key, a.audience_name,
                   a.include_anonymous
            from range(?) as r(u)
            cross join engage.engage_audiences as a
            where hash(u, a.audience_key) % 100 < a.percent
            """,
            [users],
        )
        con.execute(
            "create or replace table engage.churn as select audience_key, user_id from engage.base_memberships limit 0"
        )
        _publish_memberships(con)
        con.execute(
            "create or replace table engage.engage_traits "
            "(trait_key varchar, trait_name varchar, value_type varchar, model_name varchar)"
        )
        con.execute(
            "create or replace table engage.engage_computed_traits (user_id varchar, anonymous_id varchar, "
            "trait_key varchar, trait_name varchar, value varchar, value_type varchar, computed_at timestamptz)"
        )
        return _count(con, "select count(*) from engage.engage_audience_memberships")
    finally:
        con.close()


def churn(path: Path, users: int, round_number: int) -> int:
    """Flip 1% of the users in every audience (members leave, others join); returns the flips."""
    con = duckdb.connect(str(path))
    try:
        con.execute(
            """
            create or replace table engage.churn_round as
            select a.audience_key, 'user_' || u as user_id
            from range(?) as r(u)
            cross join engage.engage_audiences as a
            where hash(u, a.audience_key, ?) % 100 = 0
            """,
            [users, round_number],
        )
        flips = _count(con, "select count(*) from engage.churn_round")
        # churn = symmetric difference of the accumulated flips and this round's
        con.execute(
            """
            create or replace table engage.churn as
            (select * from engage.churn except select * from engage.churn_round)
            union all
            (select * from engage.churn_round except select * from engage.churn)
            """
        )
        _publish_memberships(con)
        return flips
    finally:
        con.close()


def _count(con: duckdb.DuckDBPyConnection, query: str) -> int:
    row = con.execute(query).fetchone()
    return int(row[0]) if row else 0


def _publish_memberships(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        create or replace table engage.engage_audience_memberships as
        with base as (
            select user_id, audience_key from engage.base_memberships
        ),
        members as (
            (select * from base except select user_id, audience_key from engage.churn)
            union all
            (select user_id, audience_key from engage.churn except select * from base)
        )
        select m.user_id, replace(m.user_id, 'user_', 'anon_') as anonymous_id, m.audience_key,
               a.audience_name, a.include_anonymous, true as is_member, now() as computed_at
        from members as m
        inner join engage.engage_audiences as a using (audience_key)
        """
    )


def _serve(port_pipe: Connection, control: Connection) -> None:
    from tests.servers.segment import SegmentServer

    with SegmentServer(WRITE_KEY) as server:
        port_pipe.send(server.port)
        while control.recv() == "count":
            control.send(len(server.messages))


class SegmentTestServer:
    """``tests.servers.segment.SegmentServer`` in its own process, so it does not share the client's GIL."""

    def __enter__(self) -> SegmentTestServer:
        context = multiprocessing.get_context("spawn")
        port_parent, port_child = context.Pipe()
        self._control, control_child = context.Pipe()
        self._process = context.Process(target=_serve, args=(port_child, control_child), daemon=True)
        self._process.start()
        self.port = int(port_parent.recv())
        return self

    def received(self) -> int:
        self._control.send("count")
        return int(self._control.recv())

    def __exit__(self, *exc_info: object) -> None:
        self._control.send("stop")
        self._process.join(timeout=10)


_POSTGRES_TYPES = {
    "VARCHAR": "text",
    "BOOLEAN": "boolean",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "DOUBLE": "double precision",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}
ENGAGE_TABLES = ("engage_audiences", "engage_audience_memberships", "engage_traits", "engage_computed_traits")


@contextmanager
def postgres_database(server: str) -> Iterator[str]:
    """The URL of a fresh database on ``server``, dropped afterwards."""
    import psycopg2
    from sqlalchemy.engine import make_url

    name = f"ctsync_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'create database "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


def copy_to_postgres(duckdb_path: Path, url: str, tables: tuple[str, ...], work: Path) -> None:
    """Replace ``engage.<table>`` in PostgreSQL with the DuckDB file's (CSV and COPY), then ANALYZE them."""
    import psycopg2

    con = duckdb.connect(str(duckdb_path), read_only=True)
    pg = psycopg2.connect(url)
    try:
        with pg.cursor() as cursor:
            cursor.execute("create schema if not exists engage")
            for table in tables:
                relation = con.sql(f"select * from engage.{table}")
                columns = ", ".join(
                    f"{name} {_POSTGRES_TYPES[str(kind)]}"
                    for name, kind in zip(relation.columns, relation.types, strict=True)
                )
                csv = work / f"{table}.csv"
                con.execute(f"copy engage.{table} to '{csv}' (header false)")
                cursor.execute(f"drop table if exists engage.{table}")
                cursor.execute(f"create table engage.{table} ({columns})")
                with csv.open() as handle:
                    cursor.copy_expert(f"copy engage.{table} from stdin with (format csv)", handle)
                csv.unlink()
        pg.commit()
        pg.autocommit = True
        with pg.cursor() as cursor:
            for table in tables:
                cursor.execute(f"analyze engage.{table}")
    finally:
        pg.close()
        con.close()


def time_retention(warehouse: str) -> tuple[int, int, float]:
    """Age every outbox message past the retention, then time the delete a run ends with."""
    import sqlalchemy as sa

    from ctsync.engage.outbox import prune_outbox
    from ctsync.engage.state import now
    from ctsync.warehouse.state import state_engine

    engine = state_engine(warehouse)
    try:
        with engine.begin() as conn:
            messages = int(conn.execute(sa.text("select count(*) from ctsync.sync_outbox")).scalar_one())
            conn.execute(sa.text("update ctsync.sync_outbox set updated_at = updated_at - interval '40 days'"))
        clock = time.perf_counter()
        with engine.begin() as conn:
            deleted = prune_outbox(conn, "bench", before=now() - timedelta(days=30))
        return messages, deleted, time.perf_counter() - clock
    finally:
        engine.dispose()


def reset_sync_state(warehouse: str) -> None:
    """Drop the ``ctsync`` schema: the next sync is a first sync again."""
    import sqlalchemy as sa

    from ctsync.warehouse.state import state_engine

    engine = state_engine(warehouse)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("drop schema if exists ctsync cascade"))
    finally:
        engine.dispose()


@dataclass
class Warehouse:
    label: str
    location: str
    """A DuckDB file path or a postgresql:// URL."""
    first_diffs: list[float] = field(default_factory=list)
    first_rates: list[float] = field(default_factory=list)
    diffs: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    first_runs: list[float] = field(default_factory=list)
    runs: list[float] = field(default_factory=list)
    received: int = 0
    retention: tuple[int, int, float] = (0, 0, 0.0)

    def sync(self, destination: Destination) -> tuple[SyncSummary, float]:
        clock = time.perf_counter()
        summary = sync_destination("bench", warehouse=self.location, destination=destination, environ={})
        return summary, time.perf_counter() - clock


def in_turn(warehouses: list[Warehouse], turn: int) -> list[Warehouse]:
    """The warehouses, the order alternating from one turn to the next (interleaved measurements)."""
    return warehouses if turn % 2 == 0 else warehouses[::-1]


def first_syncs(warehouses: list[Warehouse], work: Path, repeats: int) -> None:
    for turn in range(repeats):
        for warehouse in in_turn(warehouses, turn):
            if turn:
                reset_sync_state(warehouse.location)
            destination = JsonlFileDestination(work / "first.jsonl", name="bench", chunk_size=10_000)
            summary, total = warehouse.sync(destination)
            (work / "first.jsonl").unlink(missing_ok=True)
            warehouse.first_diffs.append(summary.diff_seconds)
            warehouse.first_rates.append(summary.send_rate)
            warehouse.first_runs.append(total)
            print(
                f"first sync on {warehouse.label} (JSON lines): {summary.entered:,} entered; diff + outbox "
                f"{summary.diff_seconds:.2f} s, sent {summary.sent:,} in {summary.send_seconds:.1f} s "
                f"({summary.send_rate:,.0f}/s); whole run {total:.1f} s",
                flush=True,
            )


def churn_rounds(warehouses: list[Warehouse], work: Path, users: int, rounds: int, concurrency: int) -> None:
    duckdb_file = Path(warehouses[0].location)
    for round_number in range(1, rounds + 1):
        flips = churn(duckdb_file, users, round_number)
        for warehouse in warehouses[1:]:
            copy_to_postgres(duckdb_file, warehouse.location, ("engage_audience_memberships",), work)
        for warehouse in in_turn(warehouses, round_number):
            with SegmentTestServer() as server:  # a fresh server: its memory of earlier rounds would slow it
                with SegmentHttpClient(
                    WRITE_KEY, base_url=f"http://127.0.0.1:{server.port}", name="bench", concurrency=concurrency
                ) as client:
                    summary, total = warehouse.sync(client)
                warehouse.received += server.received()
            warehouse.diffs.append(summary.diff_seconds)
            warehouse.rates.append(summary.send_rate)
            warehouse.runs.append(total)
            print(
                f"round {round_number} on {warehouse.label}: {flips:,} flips -> {summary.entered:,} entered, "
                f"{summary.exited:,} exited; diff + outbox {summary.diff_seconds:.2f} s; sent {summary.sent:,} in "
                f"{summary.send_seconds:.2f} s ({summary.send_rate:,.0f} Identify/s); whole run {total:.2f} s; "
                f"status {summary.status}",
                flush=True,
            )


def report(warehouses: list[Warehouse]) -> None:
    for warehouse in warehouses:
        messages, deleted, seconds = warehouse.retention
        print(
            f"{warehouse.label}: the Segment test server accepted {warehouse.received:,} messages; retention: "
            f"deleting {deleted:,} of {messages:,} outbox messages (all past it) took {seconds:.2f} s"
        )
    rows = [
        ("first sync: diff + outbox (s)", [statistics.median(w.first_diffs) for w in warehouses]),
        ("first sync: JSON lines written (/s)", [statistics.median(w.first_rates) for w in warehouses]),
        ("first sync: whole run (s)", [statistics.median(w.first_runs) for w in warehouses]),
        (
            "churn round: diff + outbox (s)",
            [statistics.median(w.diffs) for w in warehouses] if warehouses[0].diffs else [],
        ),
        (
            "churn round: Identify sent (/s)",
            [statistics.median(w.rates) for w in warehouses] if warehouses[0].rates else [],
        ),
        (
            "churn round: whole run (s)",
            [statistics.median(w.runs) for w in warehouses] if warehouses[0].runs else [],
        ),
        ("retention delete (s)", [w.retention[2] for w in warehouses]),
    ]
    print(
        f"{'median':<38}"
        + "".join(f"{w.label:>14}" for w in warehouses)
        + ("  PostgreSQL/DuckDB" if len(warehouses) > 1 else "")
    )
    for name, values in rows:
        if not values:
            continue
        line = f"{name:<38}" + "".join(f"{value:>14,.2f}" for value in values)
        if len(values) > 1 and values[0] > 0:
            line += f"  {values[1] / values[0]:>8.2f}x"
        print(line)
    duckdb_figures = warehouses[0]
    if duckdb_figures.diffs:
        diff_median = statistics.median(duckdb_figures.diffs)
        rate_median = statistics.median(duckdb_figures.rates)
        print(
            f"DuckDB median diff + outbox: {diff_median:.2f} s (target <= {DIFF_TARGET_SECONDS:.0f} s) "
            f"{'OK' if diff_median <= DIFF_TARGET_SECONDS else 'MISSED'}"
        )
        print(
            f"DuckDB median send rate: {rate_median:,.0f} Identify/s (target >= {SEND_TARGET_RATE:,.0f}/s) "
            f"{'OK' if rate_median >= SEND_TARGET_RATE else 'MISSED'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="churn rounds (medians are over these)")
    parser.add_argument("--first-syncs", type=int, default=1, help="first syncs per warehouse (from empty state)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight to the Segment server")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the DuckDB file (default: a temp dir)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("CTSYNC_TEST_POSTGRES_URL"),
        help="a PostgreSQL server to also sync from, on a fresh database (default: CTSYNC_TEST_POSTGRES_URL)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, _postgres(args.postgres) as postgres:
        work = Path(tmp)
        duckdb_file = work / "bench.duckdb"
        clock = time.perf_counter()
        memberships = build_engage_tables(duckdb_file, args.users)
        warehouses = [Warehouse("DuckDB", str(duckdb_file))]
        if postgres is not None:
            copy_to_postgres(duckdb_file, postgres, ENGAGE_TABLES, work)
            warehouses.append(Warehouse("PostgreSQL", postgres))
        print(
            f"built {args.users:,} users x {len(AUDIENCE_PERCENT)} audiences: {memberships:,} memberships "
            f"in {time.perf_counter() - clock:.1f} s" + ("" if postgres else " (PostgreSQL: not measured)"),
            flush=True,
        )
        first_syncs(warehouses, work, max(1, args.first_syncs))
        churn_rounds(warehouses, work, args.users, args.rounds, args.concurrency)
        for warehouse in warehouses:
            warehouse.retention = time_retention(warehouse.location)
        report(warehouses)


@contextmanager
def _postgres(server: str | None) -> Iterator[str | None]:
    if not server:
        yield None
        return
    with postgres_database(server) as url:
        yield url


if __name__ == "__main__":
    main()
