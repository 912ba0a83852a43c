"""A warehouse with the four ``engage`` tables dbt builds, written with plain SQL.

DuckDB (a file per test) by default. Test modules that set ``BACKENDS = ("duckdb", "postgres")``
also run on PostgreSQL when ``CTSYNC_TEST_POSTGRES_URL`` names a server (a database per test).
``EngageData`` connects only while it reads or writes, so a sync (in-process or a subprocess)
can take a DuckDB file in between.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from ctsync.destinations import CleverTapUploadClient, RetryPolicy, SegmentHttpClient
from ctsync.warehouse.state import state_engine
from tests.postgres import URL_VARIABLE, fresh_database
from tests.servers.clevertap import CleverTapServer, clevertap_server  # noqa: F401 (fixture)
from tests.servers.segment import SegmentServer, segment_server  # noqa: F401 (fixture)

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05, max_elapsed=3.0)

ENGAGE_DDL = (
    "create schema if not exists engage",
    """create table engage.engage_audiences (
        audience_key varchar, audience_name varchar, include_anonymous boolean, model_name varchar
    )""",
    """create table engage.engage_audience_memberships (
        user_id varchar, anonymous_id varchar, audience_key varchar, audience_name varchar,
        include_anonymous boolean, is_member boolean, computed_at timestamp with time zone
    )""",
    "create table engage.engage_traits (trait_key varchar, trait_name varchar, value_type varchar, model_name varchar)",
    """create table engage.engage_computed_traits (
        user_id varchar, anonymous_id varchar, trait_key varchar, trait_name varchar, value varchar,
        value_type varchar, computed_at timestamp with time zone
    )""",
)

Person = tuple[str | None, str | None]
"""(user_id, anonymous_id)"""


@dataclass
class EngageData:
    warehouse: str
    """What ``--warehouse`` takes: a DuckDB file path or a postgresql:// URL."""

    @property
    def path(self) -> Path:
        """The DuckDB file (DuckDB-only tests)."""
        assert "://" not in self.warehouse, "this test runs on DuckDB only"
        return Path(self.warehouse)

    def _engine(self) -> sa.Engine:
        return state_engine(self.warehouse)

    def sql(self, statement: str, **parameters: Any) -> list[tuple[Any, ...]]:
        engine = self._engine()
        try:
            with engine.begin() as conn:
                result = conn.execute(sa.text(statement), parameters)
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def _rows(self, statement: str, **parameters: Any) -> list[dict[str, Any]]:
        engine = self._engine()
        try:
            with engine.begin() as conn:
                return [dict(row) for row in conn.execute(sa.text(statement), parameters).mappings()]
        finally:
            engine.dispose()

    def create_tables(self) -> None:
        engine = self._engine()
        try:
            with engine.begin() as conn:
                for statement in ENGAGE_DDL:
                    conn.execute(sa.text(statement))
        finally:
            engine.dispose()

    def audience(self, key: str, members: Iterable[Person], *, include_anonymous: bool = False) -> None:
        """Define (or redefine) an audience and replace its members."""
        rows = [
            {"user_id": user, "anonymous_id": anon, "key": key, "name": key.title(), "anonymous": include_anonymous}
            for user, anon in members
        ]
        engine = self._engine()
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("delete from engage.engage_audiences where audience_key = :key"), {"key": key})
                conn.execute(
                    sa.text("delete from engage.engage_audience_memberships where audience_key = :key"), {"key": key}
                )
                conn.execute(
                    sa.text("insert into engage.engage_audiences values (:key, :name, :anonymous, :key)"),
                    {"key": key, "name": key.replace("_", " ").title(), "anonymous": include_anonymous},
                )
                if rows:
                    conn.execute(
                        sa.text(
                            "insert into engage.engage_audience_memberships values "
                            "(:user_id, :anonymous_id, :key, :name, :anonymous, true, now())"
                        ),
                        rows,
                    )
        finally:
            engine.dispose()

    def retire_audience(self, key: str) -> None:
        self.sql("delete from engage.engage_audiences where audience_key = :key", key=key)
        self.sql("delete from engage.engage_audience_memberships where audience_key = :key", key=key)

    def trait(self, key: str, values: Mapping[Person, Any], *, value_type: str = "number") -> None:
        """Define (or redefine) a computed trait and replace its values (JSON-encoded here)."""
        rows = [
            {"user_id": user, "anonymous_id": anon, "key": key, "value": json.dumps(value), "type": value_type}
            for (user, anon), value in values.items()
        ]
        engine = self._engine()
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("delete from engage.engage_traits where trait_key = :key"), {"key": key})
                conn.execute(sa.text("delete from engage.engage_computed_traits where trait_key = :key"), {"key": key})
                conn.execute(
                    sa.text("insert into engage.engage_traits values (:key, :key, :type, :key)"),
                    {"key": key, "type": value_type},
                )
                if rows:
                    conn.execute(
                        sa.text(
                            "insert into engage.engage_computed_traits values "
                            "(:user_id, :anonymous_id, :key, :key, :value, :type, now())"
                        ),
                        rows,
                    )
        finally:
            engine.dispose()

    def emails(self, emails: Mapping[str, str | None]) -> None:
        """(Re)create ``engage.engage_user_emails`` (what dbt builds) with these user_id -> email rows."""
        engine = self._engine()
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("drop table if exists engage.engage_user_emails"))
                conn.execute(sa.text("create table engage.engage_user_emails (user_id varchar, email varchar)"))
                if emails:
                    conn.execute(
                        sa.text("insert into engage.engage_user_emails values (:user_id, :email)"),
                        [{"user_id": user, "email": email} for user, email in emails.items()],
                    )
        finally:
            engine.dispose()

    def retire_trait(self, key: str) -> None:
        self.sql("delete from engage.engage_traits where trait_key = :key", key=key)
        self.sql("delete from engage.engage_computed_traits where trait_key = :key", key=key)

    # -- reading ctsync's state --------------------------------------------------------
    def state(self, destination: str | None = None) -> dict[tuple[str, str, str], tuple[Any, str]]:
        """{(computation_key, id_type, person_id): (value, message_id)} of confirmed state."""
        rows = self.sql(
            "select computation_key, id_type, person_id, value, message_id from ctsync.sync_state"
            + (" where destination = :destination" if destination else ""),
            destination=destination,
        )
        return {(key, kind, person): (json.loads(value), mid) for key, kind, person, value, mid in rows}

    def outbox(self, destination: str | None = None) -> list[dict[str, Any]]:
        return self._rows(
            "select * from ctsync.sync_outbox"
            + (" where destination = :destination" if destination else "")
            + " order by seq",
            destination=destination,
        )

    def runs(self) -> list[dict[str, Any]]:
        return self._rows("select * from ctsync.sync_runs order by started_at")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "BACKENDS", ("duckdb",))
        params = [pytest.param(name, marks=[pytest.mark.postgres] if name == "postgres" else []) for name in backends]
        metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "duckdb"))


@pytest.fixture
def warehouse(backend: str, tmp_path: Path) -> Iterator[str]:
    """A DuckDB file path, or the URL of a fresh PostgreSQL database (dropped afterwards)."""
    if backend == "duckdb":
        yield str(tmp_path / "warehouse.duckdb")
        return
    with fresh_database() as url:  # skipped locally without a server, a failure in CI
        yield url


@pytest.fixture(autouse=True)
def _outside_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test from an empty folder: the project's own ctsync.yml must not be picked up."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("CTSYNC_", "SEGMENT_", "CLEVERTAP_")) and name != URL_VARIABLE:
            monkeypatch.delenv(name)


@pytest.fixture
def engage(warehouse: str) -> EngageData:
    data = EngageData(warehouse)
    data.create_tables()
    return data


def segment_client(server: SegmentServer, **options: Any) -> SegmentHttpClient:
    settings: dict[str, Any] = {"timeout": 0.5, "retry": FAST_RETRY, "concurrency": 2, "name": "segment"}
    settings.update(options)
    write_key = settings.pop("write_key", server.write_key)
    return SegmentHttpClient(write_key, base_url=server.url, **settings)


def clevertap_client(server: CleverTapServer, **options: Any) -> CleverTapUploadClient:
    settings: dict[str, Any] = {"timeout": 0.5, "retry": FAST_RETRY, "concurrency": 2, "name": "clevertap"}
    settings.update(options)
    return CleverTapUploadClient(server.account_id, server.passcode, base_url=server.url, **settings)


@pytest.fixture
def segment(segment_server: SegmentServer) -> Iterator[SegmentHttpClient]:  # noqa: F811
    with segment_client(segment_server) as client:
        yield client


@pytest.fixture
def clevertap(clevertap_server: CleverTapServer) -> Iterator[CleverTapUploadClient]:  # noqa: F811
    with clevertap_client(clevertap_server) as client:
        yield client


def users(*numbers: int) -> list[Person]:
    """Identified people ``u<n>`` with anonymous ids ``a<n>``."""
    return [(f"u{n}", f"a{n}") for n in numbers]


def traits_sent(server: SegmentServer, key: str) -> list[tuple[str | None, str | None, Any]]:
    """(userId, anonymousId, value) of every message the server accepted for ``key``, in order."""
    return [
        (m.get("userId"), m.get("anonymousId"), m["traits"][key])
        for m in server.messages
        if m["context"]["personas"]["computation_key"] == key
    ]


ROOT = Path(__file__).resolve().parents[2]
WRITE_KEY_ENV = "CTSYNC_TEST_SEGMENT_KEY"
PASSCODE_ENV = "CTSYNC_TEST_CLEVERTAP_PASSCODE"


def write_config(directory: Path, destinations: Mapping[str, Mapping[str, Any]]) -> Path:
    """A ctsync.yml with these destination entries."""
    path = directory / "ctsync.yml"
    path.write_text(yaml.safe_dump({"destinations": {name: dict(entry) for name, entry in destinations.items()}}))
    return path


def segment_entry(server: SegmentServer, **settings: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "segment",
        "base_url": server.url,
        "write_key_env": WRITE_KEY_ENV,
        "timeout_seconds": 0.5,
        "max_attempts": 3,
        "backoff_initial_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "retry_budget_seconds": 3,
    }
    entry.update(settings)
    return entry


def clevertap_entry(server: CleverTapServer, **settings: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "clevertap",
        "base_url": server.url,
        "account_id": server.account_id,
        "passcode_env": PASSCODE_ENV,
        "timeout_seconds": 0.5,
        "max_attempts": 3,
        "backoff_initial_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "retry_budget_seconds": 3,
    }
    entry.update(settings)
    return entry


def sync_environment(**extra: str) -> dict[str, str]:
    """Environment for a sync subprocess or CliRunner: the test secrets, nothing from a real project."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CTSYNC_", "SEGMENT_", "CLEVERTAP_"))}
    env.update(
        {WRITE_KEY_ENV: "test-write-key", PASSCODE_ENV: "test-passcode", "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    )
    env.update(extra)
    return env


def start_sync(warehouse: Path, config: Path, destination: str, **env: str) -> subprocess.Popen[str]:
    """``ctsync sync`` as a separate process (stdout and stderr captured)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ctsync.cli_sync",
            "sync",
            "--destination",
            destination,
            "--warehouse",
            str(warehouse),
            "--config",
            str(config),
        ],
        cwd=ROOT,
        env=sync_environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
