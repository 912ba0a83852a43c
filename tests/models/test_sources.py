"""The build reads every nickname that was loaded, unioned with its source_relation, and keeps the sizes.

A nickname is typed once, at load time: ``ctsync build`` (and ``dbt build`` run directly) find
the schemas ``ctsync load`` wrote. Memberships are checked against the Python expectations of
test_audience_memberships, computed from the raw files of every export loaded.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ctsync.build import BuildResult, build_models
from ctsync.cli import app
from ctsync.exports.sample import write_sample_export
from ctsync.warehouse.loader import LoadOptions, load_export_files
from tests.models.conftest import (
    AS_OF,
    TIMEZONE,
    BuiltSample,
    query,
    read_raw_events,
    read_raw_profiles,
    resolve_identity,
    run_dbt,
)
from tests.models.test_audience_memberships import EXAMPLES, expected_people
from tests.postgres import fresh_database

Memberships = dict[str, set[tuple[str | None, str | None]]]

MEMBERSHIPS_SQL = "select audience_key, user_id, anonymous_id, source_relation from engage.engage_audience_memberships"


def expected_memberships(*exports: Path) -> Memberships:
    """Members of each example audience, from the raw files of every export (CleverTap IDs differ between them)."""
    events = [event for export in exports for event in read_raw_events(export)]
    profiles = [profile for export in exports for profile in read_raw_profiles(export)]
    identity = resolve_identity(events, profiles, AS_OF)
    expected: Memberships = {}
    for key, (_name, include_anonymous) in EXAMPLES.items():
        people = (identity.people[person] for person in expected_people(key, events, identity))
        expected[key] = {(user_id, anonymous_id) for user_id, anonymous_id in people if user_id or include_anonymous}
    return expected


def memberships(rows: list[tuple[Any, ...]]) -> Memberships:
    found: Memberships = {key: set() for key in EXAMPLES}
    for key, user_id, anonymous_id, _source in rows:
        found[key].add((user_id, anonymous_id))
    return found


def small_export(folder: Path, seed: int) -> Path:
    write_sample_export(folder, events=4_000, users=400, seed=seed, end=AS_OF, timezone=TIMEZONE)
    return folder


def load(export: Path, nickname: str, warehouse: str) -> None:
    summary = load_export_files([str(export)], LoadOptions(nickname=nickname, timezone=TIMEZONE), warehouse=warehouse)
    assert not summary.failed, [f.error for f in summary.failed]


@dataclass
class TwoSources:
    warehouse: Path
    exports: tuple[Path, Path]
    result: BuildResult


@pytest.fixture(scope="module")
def two_sources(built_sample: BuiltSample, tmp_path_factory: pytest.TempPathFactory) -> TwoSources:
    """The session's sample (nickname CleverTap_Prod, built once already) plus a second export loaded as MyApp."""
    root = tmp_path_factory.mktemp("two-sources")
    warehouse = root / "warehouse.duckdb"
    shutil.copyfile(built_sample.warehouse, warehouse)
    other = small_export(root / "myapp-export", seed=12)
    load(other, "MyApp", str(warehouse))
    result = build_models(warehouse=str(warehouse), as_of=AS_OF)
    assert result.success, result.failures
    return TwoSources(warehouse, (built_sample.export, other), result)


def test_every_loaded_nickname_is_read_with_its_source_relation(two_sources: TwoSources) -> None:
    rows = query(two_sources.warehouse, MEMBERSHIPS_SQL)
    assert memberships(rows) == expected_memberships(*two_sources.exports)
    assert {source for *_, source in rows} == {"clevertap_prod", "myapp"}

    assert two_sources.result.sources == ["clevertap_prod", "myapp"]
    loaded = query(
        two_sources.warehouse,
        "select 'clevertap_prod', count(*) from clevertap_prod.tracks "
        "union all select 'myapp', count(*) from myapp.tracks",
    )
    staged = query(
        two_sources.warehouse, "select source_relation, count(*) from analytics.stg_clevertap__tracks group by 1"
    )
    assert sorted(staged) == sorted(loaded)


def test_dbt_run_directly_finds_the_same_schemas(two_sources: TwoSources, tmp_path: Path) -> None:
    run = run_dbt(
        ["compile", "--inline", "{{ tojson(clevertap_schemas()) }}"],
        warehouse=two_sources.warehouse,
        work=tmp_path,
    )
    assert run.success, run.failures()
    compiled = run.result.result.results[0].node.compiled_code  # type: ignore[union-attr]
    assert json.loads(compiled) == two_sources.result.sources


def test_each_build_returns_its_sizes_and_appends_them_to_the_history(two_sources: TwoSources) -> None:
    result = two_sources.result
    audiences = dict(
        query(two_sources.warehouse, "select audience_key, count(*) from engage.engage_audience_memberships group by 1")
    )
    traits = dict(
        query(two_sources.warehouse, "select trait_key, count(*) from engage.engage_computed_traits group by 1")
    )
    assert result.audience_sizes == {key: audiences.get(key, 0) for key in EXAMPLES}
    assert result.trait_sizes == traits and set(traits) == {
        "lifetime_revenue",
        "last_app_version",
        "notification_clicks_last_30_days",
    }

    history = query(
        two_sources.warehouse,
        "select build_id, computation_class, computation_key, size, as_of, source_count, source_relations "
        "from engage.audience_size_history order by built_at",
    )
    builds = list(dict.fromkeys(row[0] for row in history))
    assert len(builds) == 2, "the session's build of the first source, then this one"
    latest = [row[1:] for row in history if row[0] == builds[-1]]
    assert {(kind, key): size for kind, key, size, *_ in latest} == {
        **{("audience", key): size for key, size in result.audience_sizes.items()},
        **{("trait", key): size for key, size in result.trait_sizes.items()},
    }
    assert {tuple(row[3:]) for row in latest} == {(AS_OF, 2, "clevertap_prod,myapp")}


def test_a_single_nickname_is_read_whatever_its_name(built_sample: BuiltSample, tmp_path: Path) -> None:
    """`ctsync load --nickname MyApp` then `ctsync build`: the members of `myapp`, not an empty build."""
    warehouse = str(tmp_path / "warehouse.duckdb")
    runner = CliRunner()
    loaded = runner.invoke(app, ["load", str(built_sample.export), "--nickname", "MyApp", "--timezone", TIMEZONE,
                                 "--warehouse", warehouse])  # fmt: skip
    assert loaded.exit_code == 0, loaded.output
    built = runner.invoke(app, ["build", "--warehouse", warehouse, "--as-of", AS_OF.isoformat()])
    assert built.exit_code == 0, built.output

    rows = query(Path(warehouse), MEMBERSHIPS_SQL)
    expected = query(built_sample.warehouse, MEMBERSHIPS_SQL)
    assert memberships(rows) == memberships(expected) and all(memberships(rows).values())
    assert {source for *_, source in rows} == {"myapp"}
    output = " ".join(built.output.split())
    assert "sources read: myapp" in output
    assert "audience members: acquired_by_utm_campaign" in output


@pytest.fixture(scope="module")
def postgres_two_sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, tuple[Path, Path]]]:
    root = tmp_path_factory.mktemp("postgres-two-sources")
    exports = (small_export(root / "prod", seed=21), small_export(root / "myapp", seed=22))
    with fresh_database() as url:
        load(exports[0], "CleverTap_Prod", url)
        load(exports[1], "MyApp", url)
        result = build_models(warehouse=url, as_of=AS_OF)
        assert result.success, result.failures
        assert result.sources == ["clevertap_prod", "myapp"]
        assert result.audience_sizes and result.trait_sizes
        yield url, exports


@pytest.mark.postgres
def test_postgres_reads_every_nickname_and_keeps_the_sizes(postgres_two_sources: tuple[str, tuple[Path, Path]]) -> None:
    import psycopg2

    url, exports = postgres_two_sources
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(MEMBERSHIPS_SQL)
            rows = list(cursor.fetchall())
            cursor.execute("select count(*), count(distinct build_id) from engage.audience_size_history")
            history = cursor.fetchone()
    finally:
        connection.close()
    assert memberships(rows) == expected_memberships(*exports)
    assert {source for *_, source in rows} == {"clevertap_prod", "myapp"}
    assert history == (len(EXAMPLES) + 3, 1)
