"""The dbt project on a real sample: written by the sample writer, loaded by the loader, built by dbt.

One warehouse per session (building it is the slow part); tests that change the project
work on a copy of the project and of the warehouse. dbt runs in-process through
``dbtRunner``, with its target and log folders in a temporary directory so the work tree
stays clean for everyone else working in it.
"""

from __future__ import annotations

import gc
import gzip
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from dbt.cli.main import dbtRunner, dbtRunnerResult

from ctsync.exports.sample import write_sample_export
from ctsync.warehouse.loader import LoadOptions, load_export_files

PROJECT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 20, tzinfo=UTC)
"""The sample's end, pinned as dbt's as_of so the expected memberships are exact."""
TIMEZONE = "Asia/Kolkata"
NICKNAME = "CleverTap_Prod"
SCHEMA = "clevertap_prod"
PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "tests/dbt")


@dataclass
class DbtRun:
    result: dbtRunnerResult
    messages: list[str]

    @property
    def success(self) -> bool:
        return bool(self.result.success)

    def failures(self) -> str:
        """The error lines dbt logged, for assertion messages."""
        return "\n".join(m for m in self.messages if "rror" in m or "ail" in m)[-4000:]


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_dbt(
    args: Sequence[str],
    *,
    warehouse: Path,
    work: Path,
    project: Path = PROJECT,
    as_of: datetime | None = AS_OF,
    extra_vars: dict[str, object] | None = None,
) -> DbtRun:
    """``dbt <args>`` on ``warehouse`` (a DuckDB file nobody else has open), collecting its log lines."""
    messages: list[str] = []

    def collect(event: object) -> None:
        info = getattr(event, "info", None)
        if info is not None and getattr(info, "msg", None):
            messages.append(str(info.msg))

    variables: dict[str, object] = dict(extra_vars or {})
    if as_of is not None:
        variables["as_of"] = as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
    command = [
        *args,
        "--project-dir", str(project),
        "--profiles-dir", str(project),
        "--target-path", str(work / "target"),
        "--log-path", str(work / "logs"),
        "--vars", json.dumps(variables, ensure_ascii=False),
    ]  # fmt: skip
    with _environment(CTSYNC_WAREHOUSE=str(warehouse), DO_NOT_TRACK="1", CTSYNC_DBT_TARGET="duckdb"):
        try:
            result = dbtRunner(callbacks=[collect]).invoke(command)
        finally:
            _release_warehouse()
    return DbtRun(result, messages)


def _release_warehouse() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in this process after an invocation.

    DuckDB allows one process to open a file only with one configuration, and the tests
    read the warehouse read-only between dbt runs.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    environment = DuckDBConnectionManager._ENV
    connection = getattr(environment, "conn", None)
    if connection is not None:
        connection.close()
        environment.conn = None  # type: ignore[union-attr]
    DuckDBConnectionManager.close_all_connections()
    gc.collect()


def copy_project(destination: Path) -> Path:
    """The dbt project's own files (no target/, logs/ or Python) under ``destination``."""
    for name in PROJECT_FILES:
        source = PROJECT / name
        target = destination / name
        if source.is_dir():
            shutil.copytree(source, target)
        elif source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return destination


def profile_export_time(path: Path) -> datetime:
    """A profile export's run time, from its file name ``<account>-<request>-<run ts>-<db>-json.gz``."""
    return datetime.fromtimestamp(int(path.name.split("-")[2]), tz=UTC)


@dataclass
class BuiltSample:
    export: Path
    warehouse: Path
    work: Path
    build: DbtRun


@pytest.fixture(scope="session")
def built_sample(tmp_path_factory: pytest.TempPathFactory) -> BuiltSample:
    """A realistic export (20k events, 1,500 users) loaded by the loader and built by ``dbt build``."""
    root = tmp_path_factory.mktemp("dbt-sample")
    export = root / "export"
    write_sample_export(export, events=20_000, users=1_500, seed=11, end=AS_OF, timezone=TIMEZONE)
    warehouse = root / "warehouse.duckdb"
    summary = load_export_files(
        [str(export)], LoadOptions(nickname=NICKNAME, timezone=TIMEZONE), warehouse=str(warehouse)
    )
    assert not summary.failed, [f.error for f in summary.failed]
    build = run_dbt(["build"], warehouse=warehouse, work=root)
    assert build.success, build.failures()
    return BuiltSample(export, warehouse, root, build)


def query(warehouse: Path, sql: str) -> list[tuple[object, ...]]:
    """Read-only query; the connection is closed before dbt runs again."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# ---------------------------------------------------------------------------------------
# Expectations computed in plain Python from the raw export files, independently of the
# loader and of the SQL: the rules are the documented ones (docs/dbt.md), re-implemented.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawEvent:
    name: str
    at: datetime
    user_id: str | None
    anonymous_id: str | None
    props: dict[str, object]
    session: dict[str, object]
    device: dict[str, object]


def read_raw_events(export: Path, timezone: str = TIMEZONE) -> list[RawEvent]:
    """Every event line of the export's event files (header lines skipped, exact duplicates once)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(timezone)
    seen: set[bytes] = set()
    events = []
    for path in sorted(export.iterdir()):
        if not path.name.endswith(".json.gz"):
            continue  # the profile export is <account>-<request>-<run ts>-<db>-json.gz
        for line in gzip.decompress(path.read_bytes()).splitlines():
            line = line.strip()
            if not line.startswith(b"{") or line in seen:
                continue
            seen.add(line)
            record = json.loads(line)
            profile = record.get("profile") or {}
            local = datetime.strptime(str(record["ts"]), "%Y%m%d%H%M%S").replace(tzinfo=zone)
            events.append(
                RawEvent(
                    name=record["eventName"],
                    at=local.astimezone(UTC),
                    user_id=profile.get("identity") or profile.get("email") or profile.get("phone"),
                    anonymous_id=profile.get("objectId"),
                    props=record.get("eventProps") or {},
                    session=record.get("sessionProps") or {},
                    device=record.get("deviceInfo") or {},
                )
            )
    return events


def read_raw_profiles(export: Path) -> list[tuple[str | None, str | None, datetime]]:
    """(user_id, anonymous_id, exported at) per profile record of the export."""
    result = []
    for path in sorted(export.iterdir()):
        if not path.name.endswith("-json.gz"):
            continue
        exported_at = profile_export_time(path)
        for line in gzip.decompress(path.read_bytes()).splitlines():
            if line.strip():
                record = json.loads(line)
                user_id = record.get("identity") or record.get("Email") or record.get("Phone")
                result.append((user_id, record.get("clevertapId"), exported_at))
    return result


@dataclass
class Identity:
    """Who is who as of as_of: the person of each event, and each person's ids."""

    latest_user: dict[str, str]
    """anonymous_id -> latest user_id seen with it."""
    people: dict[str, tuple[str | None, str | None]]
    """person -> (user_id or None, latest anonymous_id)."""

    def person_of(self, event: RawEvent) -> str | None:
        if event.user_id:
            return event.user_id
        if event.anonymous_id is None:
            return None
        return self.latest_user.get(event.anonymous_id, event.anonymous_id)


def resolve_identity(
    events: list[RawEvent], profiles: list[tuple[str | None, str | None, datetime]], as_of: datetime
) -> Identity:
    last_seen: dict[tuple[str | None, str | None], datetime] = {}
    observations = [(e.anonymous_id, e.user_id, e.at) for e in events] + [
        (anonymous_id, user_id, at) for user_id, anonymous_id, at in profiles
    ]
    for anonymous_id, user_id, at in observations:
        if at > as_of or (anonymous_id is None and user_id is None):
            continue
        key = (anonymous_id, user_id)
        last_seen[key] = max(at, last_seen.get(key, at))
    latest: dict[str, tuple[datetime, str]] = {}
    for (anonymous_id, user_id), at in last_seen.items():
        if anonymous_id is not None and user_id is not None:
            latest[anonymous_id] = max(latest.get(anonymous_id, (at, user_id)), (at, user_id))
    latest_user = {anonymous_id: user for anonymous_id, (_at, user) in latest.items()}
    newest_device: dict[str, tuple[datetime, str]] = {}
    people: dict[str, tuple[str | None, str | None]] = {}
    for (anonymous_id, user_id), at in last_seen.items():
        user = user_id or (latest_user.get(anonymous_id) if anonymous_id else None)
        person = user or anonymous_id
        assert person is not None
        people.setdefault(person, (user, None))
        if anonymous_id is not None:
            newest_device[person] = max(newest_device.get(person, (at, anonymous_id)), (at, anonymous_id))
    for person, (user, _) in people.items():
        people[person] = (user, newest_device[person][1] if person in newest_device else None)
    return Identity(latest_user, people)


@pytest.fixture(scope="session")
def raw_events(built_sample: BuiltSample) -> list[RawEvent]:
    return read_raw_events(built_sample.export)


@pytest.fixture(scope="session")
def identity(built_sample: BuiltSample, raw_events: list[RawEvent]) -> Identity:
    return resolve_identity(raw_events, read_raw_profiles(built_sample.export), AS_OF)
