"""Steady-state benchmark: the scheduled cycle, repeated on one warehouse as it grows.

    python benchmarks/steady_state.py --events 1000000 --cycles 50 [--per-cycle N] [--postgres URL]

First the load benchmark's export of N events (generated once, cached under benchmarks/data/) is loaded,
built and synced. Then C cycles of what the 2-hourly schedule does, each command a process of its own:
new export files (two hours of events, N/360 by default, App Launched among them; a profile export every
12th cycle, a never-seen event name every 10th) -> ``ctsync load`` of the whole export location ->
``ctsync build --as-of <cycle time>`` -> ``ctsync sync -d jsonl`` -> a checkpoint by another process
(DuckDB: a plain connection's CHECKPOINT; PostgreSQL: VACUUM ANALYZE and CHECKPOINT). The warehouse is a
DuckDB file in a temporary folder, or with ``--postgres`` a fresh database on that server (dropped after).

Prints one line per cycle (seconds, exit codes, rows added, messages sent, warehouse size), then each
step's median and p90, the last cycles against the first (does a cycle slow down as the warehouse
grows?), the warehouse's growth per cycle and bytes per event, and each step's peak RSS and CPU seconds
(of the command's whole process tree). Exits 1 if any command failed.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from benchmarks.load import END, ensure_export  # noqa: E402
from ctsync.exports.sample import write_sample_export  # noqa: E402

NICKNAME = "CleverTap_Prod"
SCHEMA = "clevertap_prod"
TIMEZONE = "Asia/Kolkata"
CYCLE = timedelta(hours=2)
CYCLES_PER_MONTH = 360
PROFILES_EVERY = 12
NEW_EVENT_EVERY = 10
NEW_EVENT_EVENTS = 25
SEED = 5000
STEPS = ("load", "build", "sync", "checkpoint")
WINDOW = 5
"""Cycles averaged at each end for the first-versus-last comparison."""


@dataclass
class StepResult:
    seconds: float
    exit_code: int
    peak_rss_mib: float
    cpu_seconds: float
    output: str


@dataclass
class CycleResult:
    cycle: int
    steps: dict[str, StepResult]
    rows_added: int
    messages: int
    warehouse_bytes: int

    @property
    def failed(self) -> list[str]:
        return [name for name, step in self.steps.items() if step.exit_code != 0]


# --- the export files -----------------------------------------------------------------------------------


def local_ts(moment: datetime, zone: ZoneInfo) -> int:
    return int(moment.astimezone(zone).strftime("%Y%m%d%H%M%S"))


def parse_local_ts(value: int, zone: ZoneInfo) -> datetime:
    return datetime.strptime(str(value), "%Y%m%d%H%M%S").replace(tzinfo=zone)


def write_series(folder: Path, request_id: str, run_ts: int, name: str, day: str, lines: list[bytes]) -> None:
    """One CleverTap file series chunk: gzip JSON lines after a bare event-name line."""
    path = folder / f"{request_id}-{run_ts}-{name.replace(' ', '-')}-{day}-0-3.json.gz"
    body = name.encode() + b"\n" + b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(body, compresslevel=1))


def write_increment(folder: Path, cycle: int, at: datetime, events: int) -> int:
    """Two hours of events ending at ``at``, as one export run: a generated day of activity whose times are
    squeezed into its last two hours (profile export included every ``PROFILES_EVERY`` cycles). Returns the
    events written."""
    zone = ZoneInfo(TIMEZONE)
    request_id = f"19{cycle:08d}"
    run_ts = int(at.timestamp())
    day = timedelta(days=1)
    series: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="ctsync-increment-") as staging:
        summary = write_sample_export(
            staging,
            events=events,
            users=max(100, events // 10),
            seed=SEED + cycle,
            end=at,
            days=1,
            timezone=TIMEZONE,
            header_lines=False,
            compress=False,
            profiles=cycle % PROFILES_EVERY == 1,
            request_id=request_id,
        )
        for path in summary.files:
            for line in path.read_bytes().splitlines():
                if line.strip():
                    record = orjson.loads(line)
                    moment = at - (at - parse_local_ts(record["ts"], zone)) * (CYCLE / day)
                    record["ts"] = local_ts(moment, zone)
                    series[(record["eventName"], moment.astimezone(zone).strftime("%Y%m%d"))].append(
                        orjson.dumps(record)
                    )
        if summary.profile_file is not None:
            profiles = summary.profile_file
            (folder / f"{profiles.name}.gz").write_bytes(gzip.compress(profiles.read_bytes(), compresslevel=1))
    if cycle % NEW_EVENT_EVERY == 2:
        series.update(new_event_series(cycle, at, zone))
    for (name, local_day), lines in series.items():
        write_series(folder, request_id, run_ts, name, local_day, lines)
    return sum(len(lines) for lines in series.values())


def new_event_series(cycle: int, at: datetime, zone: ZoneInfo) -> dict[tuple[str, str], list[bytes]]:
    """A custom event nobody sent before, from known users: a table the warehouse does not have yet."""
    name = f"Survey Answered {cycle}"
    lines = [
        orjson.dumps(
            {
                "ts": local_ts(at - timedelta(minutes=index + 1), zone),
                "eventName": name,
                "profile": {"objectId": f"__gsurvey{index:06d}", "identity": f"u-{index:07d}"},
                "eventProps": {"Score": index % 10, "Question": "How likely are you to recommend us?"},
            }
        )
        for index in range(NEW_EVENT_EVENTS)
    ]
    return {(name, at.astimezone(zone).strftime("%Y%m%d")): lines}


# --- the commands -----------------------------------------------------------------------------------------


@dataclass
class Pipeline:
    warehouse: str
    work: Path
    initial_export: Path
    increments: Path = field(init=False)
    jsonl: Path = field(init=False)
    sent_bytes: int = 0

    def __post_init__(self) -> None:
        self.increments = self.work / "increments"
        self.increments.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.work / "identify.jsonl"

    @property
    def is_postgres(self) -> bool:
        return self.warehouse.startswith("postgresql")

    def environment(self) -> dict[str, str]:
        environment = {name: value for name, value in os.environ.items() if not name.startswith("CTSYNC_")}
        environment.update(
            CTSYNC_JSONL_PATH=str(self.jsonl),
            CTSYNC_PROJECT_DIR=str(ROOT),
            DBT_TARGET_PATH=str(self.work / "dbt-target"),
            DBT_LOG_PATH=str(self.work / "dbt-logs"),
            DO_NOT_TRACK="1",
            COLUMNS="200",
        )
        return environment

    def run(self, arguments: list[str]) -> StepResult:
        """A command in a process of its own; wall time, and the peak RSS and CPU of its process tree."""
        log = self.work / "command.log"
        with log.open("w") as output:
            started = time.perf_counter()
            child = subprocess.Popen(
                [sys.executable, *arguments], cwd=self.work, env=self.environment(), stdout=output, stderr=output
            )
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        return StepResult(
            seconds=seconds,
            exit_code=child.returncode,
            peak_rss_mib=usage.ru_maxrss / 1024,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            output=log.read_text(errors="replace"),
        )

    def ctsync(self, *arguments: str) -> StepResult:
        return self.run(["-m", "ctsync.cli", *arguments, "--warehouse", self.warehouse])

    def load(self) -> StepResult:
        """The whole export location: the initial export and every increment written so far."""
        folders = [self.initial_export, *([self.increments] if any(self.increments.iterdir()) else [])]
        return self.ctsync("load", *map(str, folders), "--nickname", NICKNAME, "--timezone", TIMEZONE)

    def build(self, at: datetime) -> StepResult:
        return self.ctsync("build", "--as-of", at.isoformat())

    def sync(self) -> StepResult:
        return self.ctsync("sync", "-d", "jsonl")

    def checkpoint(self) -> StepResult:
        if self.is_postgres:
            script = (
                "import psycopg2, sys; connection = psycopg2.connect(sys.argv[1]); connection.autocommit = True; "
                "cursor = connection.cursor(); cursor.execute('vacuum analyze'); cursor.execute('checkpoint')"
            )
        else:
            script = "import duckdb, sys; duckdb.connect(sys.argv[1]).execute('checkpoint')"
        return self.run(["-c", script, self.warehouse])

    def new_messages(self) -> int:
        """Identify calls appended to the JSON-lines file since the last call."""
        if not self.jsonl.exists():
            return 0
        with self.jsonl.open("rb") as handle:
            handle.seek(self.sent_bytes)
            appended = handle.read()
        self.sent_bytes += len(appended)
        return appended.count(b"\n")

    def query(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        if self.is_postgres:
            import psycopg2

            connection = psycopg2.connect(self.warehouse)
            try:
                with connection.cursor() as cursor:
                    cursor.execute(sql.replace("?", "%s"), params)
                    return list(cursor.fetchall())
            finally:
                connection.close()
        import duckdb

        con = duckdb.connect(self.warehouse, read_only=True)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def rows_added_since(self, moment: datetime) -> int:
        rows = self.query(
            f"select coalesce(sum(rows_inserted), 0) from {SCHEMA}._loads where started_at >= ?", [moment]
        )
        return int(rows[0][0])

    def size(self) -> int:
        """The DuckDB file (and its WAL), or the PostgreSQL database, in bytes."""
        if self.is_postgres:
            return int(self.query("select pg_database_size(current_database())", [])[0][0])
        return sum(
            path.stat().st_size for path in (Path(self.warehouse), Path(self.warehouse + ".wal")) if path.exists()
        )


def run_cycle(pipeline: Pipeline, cycle: int, at: datetime) -> CycleResult:
    started_at = datetime.now(UTC)
    steps = {"load": pipeline.load(), "build": pipeline.build(at), "sync": pipeline.sync()}
    messages = pipeline.new_messages()
    steps["checkpoint"] = pipeline.checkpoint()
    rows = pipeline.rows_added_since(started_at) if steps["load"].exit_code == 0 else 0
    return CycleResult(cycle, steps, rows, messages, pipeline.size())


# --- the report -------------------------------------------------------------------------------------------


def p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def print_header() -> None:
    print(
        f"{'cycle':>5} {'load s':>7} {'build s':>7} {'sync s':>7} {'ckpt s':>7} {'exit codes':>10} "
        f"{'rows added':>11} {'messages':>9} {'warehouse MB':>12}"
    )


def print_cycle(result: CycleResult) -> None:
    seconds = " ".join(f"{result.steps[name].seconds:7.2f}" for name in STEPS)
    codes = "/".join(str(result.steps[name].exit_code) for name in STEPS)
    print(
        f"{result.cycle:>5} {seconds} {codes:>10} {result.rows_added:>11,} {result.messages:>9,} "
        f"{result.warehouse_bytes / 1e6:>12.1f}",
        flush=True,
    )
    for name in result.failed:
        tail = "\n".join(result.steps[name].output.strip().splitlines()[-8:])
        print(f"      {name} failed (exit {result.steps[name].exit_code}):\n{tail}", flush=True)


def print_summary(initial: CycleResult, cycles: list[CycleResult], initial_events: int) -> None:
    print()
    print(f"over {len(cycles)} cycles after the initial load of {initial_events:,} events:")
    print(
        f"{'step':<10} {'median s':>8} {'p90 s':>7} {'first s':>8} {'last s':>7} {'last/first':>10} "
        f"{f'last{WINDOW}/first{WINDOW}':>13} {'peak RSS MiB':>12} {'CPU s median':>12}"
    )
    for name in STEPS:
        seconds = [cycle.steps[name].seconds for cycle in cycles]
        head = statistics.mean(seconds[:WINDOW])
        tail = statistics.mean(seconds[-WINDOW:])
        print(
            f"{name:<10} {statistics.median(seconds):8.2f} {p90(seconds):7.2f} {seconds[0]:8.2f} {seconds[-1]:7.2f} "
            f"{seconds[-1] / seconds[0]:9.2f}x {tail / head:12.2f}x "
            f"{max(cycle.steps[name].peak_rss_mib for cycle in cycles):12.0f} "
            f"{statistics.median(cycle.steps[name].cpu_seconds for cycle in cycles):12.1f}"
        )
    total = [sum(cycle.steps[name].seconds for name in STEPS) for cycle in cycles]
    print(
        f"{'cycle':<10} {statistics.median(total):8.2f} {p90(total):7.2f} {total[0]:8.2f} {total[-1]:7.2f} "
        f"{total[-1] / total[0]:9.2f}x {statistics.mean(total[-WINDOW:]) / statistics.mean(total[:WINDOW]):12.2f}x"
    )
    print(
        f"initial load: load {initial.steps['load'].seconds:.1f} s, build {initial.steps['build'].seconds:.1f} s, "
        f"sync {initial.steps['sync'].seconds:.1f} s ({initial.messages:,} messages), "
        f"peak RSS {max(step.peak_rss_mib for step in initial.steps.values()):.0f} MiB"
    )
    print(
        f"rows added per cycle: median {statistics.median(c.rows_added for c in cycles):,.0f}; "
        f"messages per cycle: median {statistics.median(c.messages for c in cycles):,.0f}"
    )
    print_sizes(initial, cycles)


def print_sizes(initial: CycleResult, cycles: list[CycleResult]) -> None:
    """Size after the initial cycle and at the end, per row loaded, and growth per cycle (overall and over
    the second half, once dbt's first rewrites have left free space the file reuses)."""
    rows = initial.rows_added + sum(cycle.rows_added for cycle in cycles)
    final = cycles[-1].warehouse_bytes
    middle = cycles[len(cycles) // 2 - 1] if len(cycles) > 1 else initial
    later_cycles = len(cycles) - len(cycles) // 2 if len(cycles) > 1 else len(cycles)
    print(
        f"warehouse: {initial.warehouse_bytes / 1e6:.1f} MB after the initial cycle "
        f"({initial.warehouse_bytes / max(initial.rows_added, 1):.0f} bytes per row loaded), "
        f"{final / 1e6:.1f} MB after {len(cycles)} more ({final / max(rows, 1):.0f} bytes per row loaded); "
        f"growth per cycle {(final - initial.warehouse_bytes) / len(cycles) / 1e6:.2f} MB on average, "
        f"{(final - middle.warehouse_bytes) / later_cycles / 1e6:.2f} MB over the last {later_cycles}"
    )


# --- the run ----------------------------------------------------------------------------------------------


@contextmanager
def warehouse_for(postgres: str | None, work: Path) -> Iterator[str]:
    """A DuckDB file in ``work``, or a fresh database on the PostgreSQL server (dropped afterwards)."""
    if postgres is None:
        yield str(work / "warehouse.duckdb")
        return
    import uuid

    import psycopg2
    from sqlalchemy.engine import make_url

    name = f"ctsync_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(postgres)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'create database "{name}"')
    try:
        yield make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the initial load")
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--per-cycle", type=int, help="events per cycle (default: events / 360, two hours of a month)")
    parser.add_argument("--postgres", help="a PostgreSQL server: run on a fresh database there instead of DuckDB")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (warehouse, files, logs)")
    args = parser.parse_args()
    if args.cycles < 1:
        parser.error("--cycles must be at least 1")
    per_cycle = args.per_cycle or max(1, args.events // CYCLES_PER_MONTH)
    export = ensure_export(args.events)
    initial_events = int((export / ".complete").read_text())
    work = Path(tempfile.mkdtemp(prefix="ctsync-steady-"))
    failed = False
    try:
        with warehouse_for(args.postgres, work) as warehouse:
            pipeline = Pipeline(warehouse, work, export)
            kind = "PostgreSQL" if args.postgres else "DuckDB"
            print(
                f"{kind} warehouse; initial load {initial_events:,} events, then {args.cycles} cycles of {per_cycle:,}"
            )
            print_header()
            initial = run_cycle(pipeline, 0, END)
            print_cycle(initial)
            failed = bool(initial.failed)
            cycles: list[CycleResult] = []
            for cycle in range(1, args.cycles + 1):
                at = END + CYCLE * cycle
                write_increment(pipeline.increments, cycle, at, per_cycle)
                cycles.append(run_cycle(pipeline, cycle, at))
                print_cycle(cycles[-1])
                failed = failed or bool(cycles[-1].failed)
            print_summary(initial, cycles, initial_events)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        print("FAILED: at least one command exited non-zero (see above)")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
