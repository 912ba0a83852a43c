"""The scheduled cycle, repeated on one warehouse: new export files -> ``ctsync load`` -> ``ctsync build``
-> ``ctsync sync``, each command a process of its own as the schedule runs them, and after every cycle
another process opens the warehouse and checkpoints it. On both warehouses, every cycle's lines reconcile
with the files written, its new rows are exactly its new events, and the sync sends exactly the changes
dbt's output went through in that cycle; a second sync right after sends nothing.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ctsync.exports.sample import write_sample_export
from tests.conftest import event, write_export
from tests.postgres import fresh_database
from tests.warehouse.conftest import query

PROJECT = Path(__file__).resolve().parents[1]
NICKNAME = "CleverTap_Prod"
SCHEMA = "clevertap_prod"
CYCLES = 4
FIRST_CYCLE_AT = datetime(2026, 11, 20, tzinfo=UTC)
CYCLE_DAYS = 3
SEED = 41
USERS = 400
BACKFILL_EVENTS = 90_000
"""The first export, 30 days. Its largest table (App Launched, about 36,000 rows) spans more than two row
groups of 16,384 rows: the size earlier loaders wrote, which another process's checkpoint then merged."""
INCREMENT_EVENTS = 1_500
SAMPLE_REQUEST = "1700000001"
REEXPORT_REQUEST = "1800000000"
"""A second export job over the same days: its files repeat events the first one already delivered."""
REPLAYED_LINES = 50
REGULARS = 20
"""Identified users (u-0000000 ...) who launch the app in every cycle, each time with a newer version."""
NEW_EVENT = "Referral Sent"
NEW_EVENT_CYCLE = 3
MALFORMED_CYCLE = 2
MALFORMED_LINE = '{"eventName": "App Launched", "ts": 2026'

Key = tuple[str, str, str, str]
"""(computation_class, computation_key, id_type, person_id): one value the destination holds."""
Message = tuple[str, str, str | None, str | None, str]
"""(computation_class, computation_key, userId, anonymousId, value as JSON): one Identify call."""


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty warehouse: a DuckDB file path or a fresh PostgreSQL database's URL."""
    if request.param == "duckdb":
        yield str(tmp_path / "warehouse.duckdb")
        return
    with fresh_database() as url:
        yield url


# --- the export files, and what they hold -------------------------------------------------------------


def ts_of(moment: datetime) -> int:
    return int(moment.astimezone(UTC).strftime("%Y%m%d%H%M%S"))


def is_profile_export(path: Path) -> bool:
    return path.name.endswith("-json.gz")


def series_of(path: Path) -> str:
    """The export run and file series a file is a chunk of (its name without the chunk index)."""
    if is_profile_export(path):
        return path.name
    return re.sub(r"-\d+-[^-.]+\.json(\.gz)?$", "", path.name)


def non_blank_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [line for line in data.split(b"\n") if line.strip()]


def parsed(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


@dataclass(frozen=True)
class WrittenFile:
    lines: int
    """Non-blank lines, the bare event-name first line included."""
    header: int
    malformed: int
    records: list[dict[str, Any]]

    @classmethod
    def read(cls, path: Path) -> WrittenFile:
        lines = non_blank_lines(path)
        header = 1 if lines and not lines[0].lstrip().startswith(b"{") else 0
        records = [parsed(line) for line in lines[header:]]
        valid = [record for record in records if record is not None]
        return cls(len(lines), header, len(records) - len(valid), valid)


def table_of(path: Path, record: dict[str, Any]) -> str:
    if is_profile_export(path):
        return "identifies"
    return str(record["eventName"]).lower().replace(" ", "_")


@dataclass
class EventLedger:
    """Every distinct event and profile record written so far, counted as the loader documents it:
    identical lines in one file series are that many events; the same line in two series is one event."""

    copies: dict[str, int] = field(default_factory=dict)

    def add(self, files: list[Path]) -> Counter[str]:
        """New rows per table that ``files`` bring."""
        by_series: dict[str, Counter[tuple[str, str]]] = {}
        for path in files:
            series = by_series.setdefault(series_of(path), Counter())
            for record in WrittenFile.read(path).records:
                series[(table_of(path, record), json.dumps(record, sort_keys=True))] += 1
        new: Counter[str] = Counter()
        for contents in by_series.values():
            for (table, content), copies in contents.items():
                known = self.copies.get(content, 0)
                if copies > known:
                    new[table] += copies - known
                    self.copies[content] = copies
        return new


def write_cycle_files(export: Path, cycle: int, at: datetime, previous: list[Path]) -> list[Path]:
    """This cycle's new export files: the first cycle a 30-day backfill, then the days since the last cycle,
    a re-export that repeats some of the previous cycle's events, and once a never-seen event name."""
    existing = set(export.iterdir()) if export.exists() else set()
    if cycle == 1:
        write_sample_export(export, events=BACKFILL_EVENTS, users=USERS, seed=SEED, end=at, days=30)
    else:
        write_sample_export(export, events=INCREMENT_EVENTS, users=USERS, seed=SEED + cycle, end=at, days=CYCLE_DAYS)
        write_reexport(export, cycle, at, replayed_lines(previous))
    if cycle == NEW_EVENT_CYCLE:
        write_new_event(export, at)
    return sorted(set(export.iterdir()) - existing)


def replayed_lines(previous: list[Path]) -> list[bytes]:
    launches = [
        path for path in previous if path.name.startswith(f"{SAMPLE_REQUEST}-") and "-App-Launched-" in path.name
    ]
    lines = [line for path in launches for line in non_blank_lines(path) if line.startswith(b"{")]
    return lines[:REPLAYED_LINES]


def regular(index: int) -> dict[str, str]:
    return {"objectId": f"__gregular{index:04d}", "identity": f"u-{index:07d}"}


def write_reexport(export: Path, cycle: int, at: datetime, replayed: list[bytes]) -> Path:
    """App Launched of a second export job: lines already loaded, each regular's launch on a new version
    (one of them logged twice in the series: two launches), and in one cycle a line that is not JSON."""
    launches: list[dict[str, Any] | str | bytes] = [
        event(
            "App Launched",
            ts_of(at - timedelta(minutes=index + 1)),
            {"CT App Version": f"5.{cycle}.0"},
            **regular(index),
        )
        for index in range(REGULARS)
    ]
    lines = [*replayed, *launches, launches[0]]
    if cycle == MALFORMED_CYCLE:
        lines.insert(len(replayed) + 1, MALFORMED_LINE)
    name = f"{REEXPORT_REQUEST}-{int(at.timestamp())}-App-Launched-{at:%Y%m%d}-0-3.json.gz"
    return write_export(export / name, lines, header="App Launched")


def write_new_event(export: Path, at: datetime) -> Path:
    referrals: list[dict[str, Any] | str | bytes] = [
        event(
            NEW_EVENT,
            ts_of(at - timedelta(minutes=2 * index + 1)),
            {"Channel": "WhatsApp", "Reward": 50 + index},
            **regular(index),
        )
        for index in range(REGULARS)
    ]
    name = f"{REEXPORT_REQUEST}-{int(at.timestamp())}-{NEW_EVENT.replace(' ', '-')}-{at:%Y%m%d}-0-3.json.gz"
    return write_export(export / name, referrals)


# --- the warehouse, read between the commands ---------------------------------------------------------


@dataclass(frozen=True)
class WarehouseCounts:
    rows: dict[str, int]
    """Rows per event table and ``identifies``."""
    tracks: int
    loads: int
    rejected: int

    @classmethod
    def read(cls, warehouse: str) -> WarehouseCounts:
        if not warehouse.startswith("postgresql") and not Path(warehouse).exists():
            return cls({}, 0, 0, 0)
        tables = sorted(
            str(name)
            for (name,) in query(
                warehouse,
                "select table_name from information_schema.tables where table_schema = ? and table_type = 'BASE TABLE'",
                [SCHEMA],
            )
            if name not in ("_loads", "_rejected", "users")
        )
        if not tables:
            return cls({}, 0, 0, 0)
        counted = [f"select '{name}', count(*) from {SCHEMA}.{name}" for name in tables]
        counted += [f"select '{name}', count(*) from {SCHEMA}.{name}" for name in ("tracks", "_loads", "_rejected")]
        counts = {str(name): int(count) for name, count in query(warehouse, " union all ".join(counted))}
        return cls({name: counts[name] for name in tables}, counts["tracks"], counts["_loads"], counts["_rejected"])

    def added_since(self, before: WarehouseCounts) -> dict[str, int]:
        added = {name: count - before.rows.get(name, 0) for name, count in self.rows.items()}
        return {name: count for name, count in added.items() if count}


def load_rows(warehouse: str, files: list[Path]) -> list[tuple[Any, ...]]:
    names = {path.name for path in files}
    rows = query(
        warehouse,
        "select file_name, status, header_lines, lines_read, rows_loaded, rows_inserted, rows_rejected, "
        f"rows_skipped from {SCHEMA}._loads",
    )
    return [row for row in rows if row[0] in names]


def check_load(warehouse: str, files: list[Path], new_rows: Counter[str], before: WarehouseCounts) -> None:
    """Every line of this cycle's files is accounted for, and only the new events became rows."""
    after = WarehouseCounts.read(warehouse)
    rows = load_rows(warehouse, files)
    assert sorted(row[0] for row in rows) == sorted(path.name for path in files)
    assert after.loads == before.loads + len(files)
    by_name = {row[0]: row for row in rows}
    malformed = 0
    for path in files:
        written = WrittenFile.read(path)
        _, status, header, read, loaded, _, rejected, skipped = by_name[path.name]
        assert (status, header, read, rejected, skipped) == (
            "loaded",
            written.header,
            written.lines - written.header,
            written.malformed,
            0,
        ), path.name
        assert read == loaded + rejected + skipped, path.name
        malformed += written.malformed
    assert after.rejected - before.rejected == malformed
    assert sum(int(row[5]) for row in rows) == sum(new_rows.values())
    assert after.added_since(before) == dict(new_rows)
    assert after.tracks == sum(count for name, count in after.rows.items() if name != "identifies")


@dataclass(frozen=True)
class Said:
    value: str
    """JSON text."""
    anonymous_id: str | None


def engage_output(warehouse: str) -> dict[Key, Said]:
    """What dbt says every person should have: memberships (true) and trait values."""
    rows = query(
        warehouse,
        "select 'audience', audience_key, user_id, anonymous_id, 'true' "
        "from engage.engage_audience_memberships where is_member "
        "union all "
        "select 'trait', trait_key, user_id, anonymous_id, value "
        "from engage.engage_computed_traits where value is not null",
    )
    output: dict[Key, Said] = {}
    for computation_class, computation_key, user_id, anonymous_id, value in rows:
        person = ("user_id", user_id) if user_id else ("anonymous_id", anonymous_id)
        key = (computation_class, computation_key, *person)
        assert key not in output, f"two rows for {key}"
        output[key] = Said(json.dumps(json.loads(value)), anonymous_id)
    return output


def unset(computation_class: str) -> str:
    return "false" if computation_class == "audience" else "null"


def expected_messages(
    before: Mapping[Key, Said], after: Mapping[Key, Said], told: Mapping[Key, str | None]
) -> list[Message]:
    """One Identify per value that changed between two builds; a value that is gone is sent as false / null
    with the anonymousId the destination was last told."""
    messages: list[Message] = []
    for key in sorted(before.keys() | after.keys()):
        computation_class, computation_key, id_type, person = key
        now, then = after.get(key), before.get(key)
        value = now.value if now else unset(computation_class)
        if value == (then.value if then else unset(computation_class)):
            continue
        user_id = person if id_type == "user_id" else None
        anonymous_id = now.anonymous_id if now else (told[key] if id_type == "user_id" else person)
        messages.append((computation_class, computation_key, user_id, anonymous_id, value))
    return messages


def received(lines: list[bytes]) -> list[Message]:
    messages: list[Message] = []
    for line in lines:
        payload = json.loads(line)
        personas = payload["context"]["personas"]
        trait = personas["computation_key"]
        # Engage adds the person's email to every Identify; the computation is the one other trait.
        assert payload["type"] == "identify" and set(payload["traits"]) - {"email"} <= {trait}, payload
        value = payload["traits"][trait]
        messages.append(
            (personas["computation_class"], trait, payload.get("userId"), payload.get("anonymousId"), json.dumps(value))
        )
    return messages


def key_of(message: Message) -> Key:
    computation_class, computation_key, user_id, anonymous_id, _ = message
    if user_id is not None:
        return (computation_class, computation_key, "user_id", user_id)
    assert anonymous_id is not None, message
    return (computation_class, computation_key, "anonymous_id", anonymous_id)


def change_counts(messages: list[Message]) -> tuple[int, int, int]:
    """Entries, exits and trait changes."""
    entered = sum(1 for m in messages if m[0] == "audience" and m[4] == "true")
    exited = sum(1 for m in messages if m[0] == "audience" and m[4] == "false")
    return entered, exited, len(messages) - entered - exited


def counts_line(messages: list[Message]) -> str:
    """What ``ctsync sync`` prints for these messages."""
    entered, exited, traits = change_counts(messages)
    return f"{entered:,} entered, {exited:,} exited, {traits:,} traits changed"


def difference(expected: list[Message], got: list[Message]) -> str:
    missing = list((Counter(expected) - Counter(got)).elements())
    extra = list((Counter(got) - Counter(expected)).elements())
    return (
        f"{len(missing)} changes not sent, e.g. {missing[:3]}; {len(extra)} sent that are no change, e.g. {extra[:3]}"
    )


# --- the commands, as the schedule runs them ----------------------------------------------------------


@dataclass
class Pipeline:
    warehouse: str
    folder: Path
    export: Path = field(init=False)
    jsonl: Path = field(init=False)
    sent_bytes: int = 0
    message_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.export = self.folder / "export"
        self.jsonl = self.folder / "identify.jsonl"

    def environment(self) -> dict[str, str]:
        environment = {name: value for name, value in os.environ.items() if not name.startswith("CTSYNC_")}
        environment.update(
            CTSYNC_JSONL_PATH=str(self.jsonl),
            CTSYNC_PROJECT_DIR=str(PROJECT),
            DBT_TARGET_PATH=str(self.folder / "dbt-target"),
            DBT_LOG_PATH=str(self.folder / "dbt-logs"),
            DO_NOT_TRACK="1",
            COLUMNS="200",
        )
        return environment

    def run(self, *arguments: str) -> str:
        """A command in a process of its own, from a folder without settings; its output. It must exit 0."""
        result = subprocess.run(
            [sys.executable, *arguments],
            cwd=self.folder,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (
            f"{' '.join(arguments[:3])} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        return result.stdout

    def ctsync(self, *arguments: str) -> str:
        return self.run("-m", "ctsync.cli", *arguments, "--warehouse", self.warehouse)

    def load(self) -> str:
        return self.ctsync("load", str(self.export), "--nickname", NICKNAME)

    def build(self, at: datetime) -> str:
        return self.ctsync("build", "--as-of", at.isoformat())

    def sync(self) -> tuple[str, list[Message]]:
        """The sync's output, and the Identify calls it appended to the file."""
        output = self.ctsync("sync", "-d", "jsonl")
        data = self.jsonl.read_bytes() if self.jsonl.exists() else b""
        appended, self.sent_bytes = data[self.sent_bytes :], len(data)
        lines = [line for line in appended.split(b"\n") if line.strip()]
        self.message_ids += [json.loads(line)["messageId"] for line in lines]
        return output, received(lines)

    def checkpoint(self) -> None:
        """Another process opens the warehouse and checkpoints it (a user's session, a maintenance job)."""
        if self.warehouse.startswith("postgresql"):
            script = (
                "import psycopg2, sys; connection = psycopg2.connect(sys.argv[1]); connection.autocommit = True; "
                "cursor = connection.cursor(); cursor.execute('vacuum analyze'); cursor.execute('checkpoint')"
            )
        else:
            script = "import duckdb, sys; duckdb.connect(sys.argv[1]).execute('checkpoint')"
        self.run("-c", script, self.warehouse)


# --- the test ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_cycle_loads_its_new_events_and_sends_exactly_its_changes(warehouse: str, tmp_path: Path) -> None:
    pipeline = Pipeline(warehouse, tmp_path)
    ledger = EventLedger()
    previous_files: list[Path] = []
    previous_output: dict[Key, Said] = {}
    told: dict[Key, str | None] = {}
    destination: dict[Key, str] = {}
    sent_after_first: list[Message] = []
    for cycle in range(1, CYCLES + 1):
        at = FIRST_CYCLE_AT + timedelta(days=CYCLE_DAYS * (cycle - 1))
        before = WarehouseCounts.read(warehouse)
        files = write_cycle_files(pipeline.export, cycle, at, previous_files)
        new_rows = ledger.add(files)
        if before.rows:
            assert new_rows[max(before.rows, key=before.rows.__getitem__)] > 0, "the largest table gets new rows"

        pipeline.load()
        check_load(warehouse, files, new_rows, before)

        pipeline.build(at)
        output = engage_output(warehouse)
        expected = expected_messages(previous_output, output, told)

        printed, sent = pipeline.sync()
        assert Counter(sent) == Counter(expected), f"cycle {cycle}: {difference(expected, sent)}"
        assert counts_line(expected) in printed and f"sent {len(expected):,}," in printed, printed
        for message in sent:
            told[key_of(message)] = message[3]
            destination[key_of(message)] = message[4]
        held = {key: value for key, value in destination.items() if value != unset(key[0])}
        assert held == {key: said.value for key, said in output.items()}

        printed, sent = pipeline.sync()
        assert sent == [] and "0 entered, 0 exited, 0 traits changed" in printed, printed

        pipeline.checkpoint()
        previous_files, previous_output = files, output
        if cycle > 1:
            sent_after_first += expected

    assert NEW_EVENT.lower().replace(" ", "_") in WarehouseCounts.read(warehouse).rows
    assert min(change_counts(sent_after_first)) > 0, "later cycles had entries, exits and trait changes"
    assert len(set(pipeline.message_ids)) == len(pipeline.message_ids), "a messageId was sent twice"
