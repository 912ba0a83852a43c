"""Engage sync benchmark: 1M users x 10 audiences, 1% churn.

    .venv/bin/python benchmarks/sync.py                  # 1M users, 3 churn rounds
    .venv/bin/python benchmarks/sync.py --users 100000   # quicker

1. Builds ``engage.engage_audiences`` and ``engage.engage_audience_memberships`` in a fresh
   DuckDB file: 10 audiences with 1% to 50% of the users each.
2. First sync to a JSON-lines file under the destination name ``bench`` (sets the baseline).
3. Each round: flips the membership of 1% of the users in every audience (entries and exits),
   then syncs ``bench`` again, this time to a Segment-compatible test server running in its
   own process (``tests.servers.segment``, a fresh one per round: it keeps every message in
   memory and slows down as that grows), and records the diff + outbox time and the send rate.

Prints the medians over the rounds next to the targets: diff + outbox <= 10 s, sending
>= 20,000 Identify/s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from ctsync.destinations import JsonlFileDestination, SegmentHttpClient  # noqa: E402
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


def time_retention(warehouse: Path) -> tuple[int, int, float]:
    """Age every outbox message past the retention, then time the delete a run ends with."""
    from ctsync.engage.outbox import prune_outbox
    from ctsync.engage.state import now
    from ctsync.warehouse.connection import parse_warehouse
    from ctsync.warehouse.state import state_engine

    with duckdb.connect(str(warehouse)) as con:
        messages = _count(con, "select count(*) from ctsync.sync_outbox")
        con.execute("update ctsync.sync_outbox set updated_at = updated_at - interval '40 days'")
    engine = state_engine(parse_warehouse(str(warehouse)))
    try:
        clock = time.perf_counter()
        with engine.begin() as conn:
            deleted = prune_outbox(conn, "bench", before=now() - timedelta(days=30))
        return messages, deleted, time.perf_counter() - clock
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="churn rounds (medians are over these)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight to the Segment server")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the DuckDB file (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        warehouse = work / "bench.duckdb"
        clock = time.perf_counter()
        memberships = build_engage_tables(warehouse, args.users)
        print(
            f"built {args.users:,} users x {len(AUDIENCE_PERCENT)} audiences: {memberships:,} memberships "
            f"in {time.perf_counter() - clock:.1f} s"
        )

        clock = time.perf_counter()
        first = sync_destination(
            "bench",
            warehouse=str(warehouse),
            destination=JsonlFileDestination(work / "first.jsonl", name="bench", chunk_size=10_000),
            environ={},
        )
        print(
            f"first sync (JSON lines): {first.entered:,} entered; diff + outbox {first.diff_seconds:.2f} s, "
            f"sent {first.sent:,} in {first.send_seconds:.1f} s ({first.send_rate:,.0f}/s); "
            f"whole run {time.perf_counter() - clock:.1f} s"
        )

        diffs: list[float] = []
        rates: list[float] = []
        received = 0
        for round_number in range(1, args.rounds + 1):
            flips = churn(warehouse, args.users, round_number)
            with SegmentTestServer() as server:  # a fresh server: its memory of earlier rounds would slow it
                with SegmentHttpClient(
                    WRITE_KEY, base_url=f"http://127.0.0.1:{server.port}", name="bench", concurrency=args.concurrency
                ) as client:
                    clock = time.perf_counter()
                    summary: SyncSummary = sync_destination(
                        "bench", warehouse=str(warehouse), destination=client, environ={}
                    )
                    total = time.perf_counter() - clock
                received += server.received()
            diffs.append(summary.diff_seconds)
            rates.append(summary.send_rate)
            print(
                f"round {round_number}: {flips:,} flips -> {summary.entered:,} entered, {summary.exited:,} exited; "
                f"diff + outbox {summary.diff_seconds:.2f} s; sent {summary.sent:,} in "
                f"{summary.send_seconds:.2f} s ({summary.send_rate:,.0f} Identify/s); whole run {total:.2f} s; "
                f"status {summary.status}"
            )
        print(f"the Segment test server accepted {received:,} messages")
        messages, deleted, seconds = time_retention(warehouse)
        print(f"retention: deleting {deleted:,} of {messages:,} outbox messages (all past it) took {seconds:.2f} s")
        diff_median = statistics.median(diffs)
        rate_median = statistics.median(rates)
        print(
            f"median diff + outbox: {diff_median:.2f} s (target <= {DIFF_TARGET_SECONDS:.0f} s) "
            f"{'OK' if diff_median <= DIFF_TARGET_SECONDS else 'MISSED'}"
        )
        print(
            f"median send rate: {rate_median:,.0f} Identify/s (target >= {SEND_TARGET_RATE:,.0f}/s) "
            f"{'OK' if rate_median >= SEND_TARGET_RATE else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
