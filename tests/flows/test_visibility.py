"""What the flows show and guard: sizes and counts per audience in their artifacts, one summary on a
pipeline run, and a sync that would empty audiences refused until allow_mass_change.

Real parts: the sample export, a DuckDB file built by dbt, the JSON-lines destination and Prefect's
test server, whose flow run states and artifacts are read back.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from flows.pipeline import clevertap_engage_pipeline
from flows.sync import sync_audiences
from tests.flows.conftest import END, write_settings
from tests.flows.test_failed_states import artifact_counts, artifact_rows, steps

LATER = END + timedelta(days=45)
"""A build as of this moment finds nobody active in the last 7 or 30 days: it empties those audiences."""


def rows(warehouse: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def first_pipeline(tmp_path_factory: pytest.TempPathFactory, sample_export: Path) -> tuple[Path, Path, object]:
    folder = tmp_path_factory.mktemp("visible")
    config = write_settings(folder, sample_export)
    warehouse = folder / "warehouse.duckdb"
    state = clevertap_engage_pipeline(
        destination="jsonl", as_of=END, warehouse=str(warehouse), config=str(config), return_state=True
    )
    assert state.is_completed(), state.message
    shutil.copyfile(warehouse, folder / "pristine.duckdb")  # as the first pipeline left it
    return config, warehouse, state


def test_the_pipeline_publishes_one_summary_of_load_build_and_sync(
    first_pipeline: tuple[Path, Path, object],
) -> None:
    _, warehouse, state = first_pipeline

    [summary] = artifact_rows(state, "markdown").values()  # type: ignore[arg-type]

    sizes = dict(
        rows(
            warehouse,
            "select audience_key, count(*) from engage.engage_audience_memberships group by 1",
        )
    )
    assert sizes
    for heading in ("## Load", "## Build", "## Sync to jsonl", "Per audience and trait:"):
        assert heading in summary
    assert "sources read: clevertap_prod" in summary
    assert "| exports run | 2 |" in summary and "| new rows |" in summary
    for key, size in sizes.items():
        assert f"| audience | {key} | {size:,} |" in summary  # the build's size
        assert f"| audience | {key} | {size:,} | 0 | 0 | 0 | {size:,} | 0 | 0 | 0 |" in summary  # the sync's counts
    assert "| entered | " + f"{sum(sizes.values()):,} |" in summary


def test_the_build_and_sync_flows_publish_sizes_and_counts_per_audience(
    first_pipeline: tuple[Path, Path, object],
) -> None:
    _, warehouse, state = first_pipeline
    children = steps(state)
    assert children == {
        "load-clevertap-exports": "COMPLETED",
        "build-audiences": "COMPLETED",
        "sync-audiences": "COMPLETED",
    }
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])  # type: ignore[attr-defined]
            )
        )
        by_flow = {client.read_flow(run.flow_id).name: run for run in runs}
    build_tables = artifact_rows(by_flow["build-audiences"].state)  # type: ignore[arg-type]
    sync_tables = artifact_rows(by_flow["sync-audiences"].state)  # type: ignore[arg-type]

    members = dict(rows(warehouse, "select audience_key, count(*) from engage.engage_audience_memberships group by 1"))
    sizes = {row["key"]: row["size"] for row in build_tables["build-audiences-sizes"] if row["class"] == "audience"}
    assert sizes == members
    per_audience = {row["key"]: (row["entered"], row["sent"]) for row in sync_tables["sync-jsonl-computations"]}
    assert {key: per_audience[key] for key in members} == {key: (n, n) for key, n in members.items()}


def test_a_build_that_empties_audiences_stops_the_sync_until_allowed(
    first_pipeline: tuple[Path, Path, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, warehouse, _ = first_pipeline
    monkeypatch.setenv("CTSYNC_MASS_CHANGE_FLOOR", "5")  # the sample's audiences are small
    identify = config.parent / "identify.jsonl"
    sent_before = len(identify.read_text().splitlines())

    refused = clevertap_engage_pipeline(
        destination="jsonl", as_of=LATER, warehouse=str(warehouse), config=str(config), return_state=True
    )

    assert refused.is_failed()
    assert steps(refused)["sync-audiences"] == "FAILED"
    message = refused.message or ""
    assert "sync to 'jsonl' refused: " in message and "audience order_completed_last_30days: " in message
    assert "allow_mass_change=true" in message
    assert len(identify.read_text().splitlines()) == sent_before  # nothing sent
    [summary] = artifact_rows(refused, "markdown").values()
    assert "**refused**" in summary and "| yes |" in summary
    assert rows(warehouse, "select status from ctsync.sync_runs order by started_at desc limit 1") == [("refused",)]

    allowed = clevertap_engage_pipeline(
        destination="jsonl",
        as_of=LATER,
        warehouse=str(warehouse),
        config=str(config),
        allow_mass_change=True,
        return_state=True,
    )

    assert allowed.is_completed(), allowed.message
    sent = allowed.result()["sync"]  # type: ignore[index]
    assert sent["exited"] > 0 and len(identify.read_text().splitlines()) == sent_before + sent["sent"]
    [summary] = artifact_rows(allowed, "markdown").values()
    assert "mass change allowed by the operator (allow_mass_change): audience cart_abandoners_last_7_days" in summary


def test_a_refused_sync_flow_publishes_its_counts(
    first_pipeline: tuple[Path, Path, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync flow alone: refused, it ends Failed after publishing its counts per audience."""
    config, built, _ = first_pipeline
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(built.parent / "pristine.duckdb", warehouse)
    con = duckdb.connect(str(warehouse))
    try:  # what a build that lost an audience's members would leave
        con.execute("delete from engage._audience_members where audience_key = 'dormant_users'")
    finally:
        con.close()
    monkeypatch.setenv("CTSYNC_MASS_CHANGE_FLOOR", "5")

    state = sync_audiences("jsonl", warehouse=str(warehouse), config=str(config), return_state=True)

    assert state.is_failed() and "audience dormant_users:" in (state.message or "")
    assert artifact_counts(state)["exited"] > 0 and artifact_counts(state)["sent"] == 0
    [dormant] = [row for row in artifact_rows(state)["sync-jsonl-computations"] if row["key"] == "dormant_users"]
    assert dormant["mass change"] == "yes" and dormant["exited"] == artifact_counts(state)["exited"]
