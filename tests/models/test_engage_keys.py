"""Adding an audience is adding one file; clashing or empty keys fail the build clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.models.conftest import AS_OF, BuiltSample, Identity, RawEvent, copy_project, query, run_dbt


@pytest.fixture
def project_copy(built_sample: BuiltSample, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the dbt project and of the built sample warehouse, free to change."""
    project = copy_project(tmp_path / "project")
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(built_sample.warehouse, warehouse)
    return project, warehouse


def add_audience(project: Path, file_name: str, display_name: str, sql: str) -> None:
    (project / "models" / "audiences" / file_name).write_text(
        f"{{{{ config(meta={{'display_name': '{display_name}'}}) }}}}\n\n{sql}\n"
    )


def test_a_new_audience_file_is_built_and_published(
    project_copy: tuple[Path, Path], raw_events: list[RawEvent], identity: Identity
) -> None:
    project, warehouse = project_copy
    add_audience(
        project,
        "big_spenders.sql",
        "Big Spenders",
        "select person_id from {{ ref('lifetime_revenue') }} where value >= 150",
    )
    build = run_dbt(
        ["build", "--select", "big_spenders", "path:models/engage"], warehouse=warehouse, work=project, project=project
    )
    assert build.success, build.failures()

    totals: dict[str, float] = {}
    for e in raw_events:
        if e.name == "Charged" and e.at <= AS_OF and (person := identity.person_of(e)):
            totals[person] = totals.get(person, 0.0) + float(e.props["Amount"])  # type: ignore[arg-type]
    expected = {identity.people[p] for p, total in totals.items() if round(total, 2) >= 150 and identity.people[p][0]}
    rows = query(
        warehouse,
        "select user_id, anonymous_id, audience_name from engage.engage_audience_memberships "
        "where audience_key = 'big_spenders'",
    )
    assert expected and {(u, a) for u, a, _ in rows} == expected
    assert {name for *_, name in rows} == {"Big Spenders"}
    catalog = query(warehouse, "select audience_key from engage.engage_audiences")
    assert ("big_spenders",) in catalog and len(catalog) == 7


def test_two_audiences_with_one_key_fail_the_build(project_copy: tuple[Path, Path]) -> None:
    project, warehouse = project_copy
    # "Order Completed Last 30Days" snake-cases to the key of the existing example.
    add_audience(project, "orders_again.sql", "Order Completed Last 30Days", "select 'x' as person_id")
    build = run_dbt(["build", "--select", "path:models/engage"], warehouse=warehouse, work=project, project=project)
    assert not build.success
    log = "\n".join(build.messages)
    assert "duplicate audience/trait key" in log
    assert "order_completed_last_30days" in log
    assert "models/audiences/orders_again.sql" in log and "models/audiences/order_completed_last_30days.sql" in log


def test_an_audience_and_a_trait_may_not_share_a_key(project_copy: tuple[Path, Path]) -> None:
    project, warehouse = project_copy
    add_audience(project, "revenue.sql", "Lifetime Revenue", "select 'x' as person_id")
    build = run_dbt(["build", "--select", "path:models/engage"], warehouse=warehouse, work=project, project=project)
    assert not build.success
    assert "key 'lifetime_revenue' is shared by" in "\n".join(build.messages)


@pytest.mark.parametrize("display_name", ["!!!", "   "])
def test_an_empty_key_fails_the_build(project_copy: tuple[Path, Path], display_name: str) -> None:
    project, warehouse = project_copy
    add_audience(project, "nameless.sql", display_name, "select 'x' as person_id")
    build = run_dbt(["build", "--select", "path:models/engage"], warehouse=warehouse, work=project, project=project)
    assert not build.success
    log = "\n".join(build.messages)
    assert "models/audiences/nameless.sql" in log
    assert ("has an empty key" in log) or ("has no display name" in log)
