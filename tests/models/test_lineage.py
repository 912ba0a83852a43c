"""dbt's lineage shows every audience and trait feeding the engage outputs (and the sync destinations
as exposures): ``dbt ls -s +engage_audience_memberships`` selects every audience."""

from __future__ import annotations

from pathlib import Path

from ctsync.lineage import OWN_FILE, engage_model_names, render, write_engage_model_names
from tests.models.conftest import PROJECT, copy_project, run_dbt

NEW_AUDIENCE = """\
{{ config(meta={'display_name': 'Lineage Check'}) }}

select distinct user_id as person_id from {{ ref('stg_clevertap__tracks') }} where user_id is not null
"""


def selected(project: Path, work: Path, *args: str) -> list[str]:
    result = run_dbt(["ls", "--output", "name", *args], warehouse=work / "w.duckdb", work=work, project=project)
    assert result.success, result.failures()
    return sorted(str(name) for name in result.result.result)


def test_the_committed_list_is_current() -> None:
    names = engage_model_names(PROJECT)
    assert names["audience"] == sorted(path.stem for path in (PROJECT / "models" / "audiences").glob("*.sql"))
    assert names["trait"] == sorted(path.stem for path in (PROJECT / "models" / "traits").glob("*.sql"))
    assert (PROJECT / OWN_FILE).read_text() == render(names), "run ctsync build (it rewrites the list)"


def test_every_audience_and_trait_is_upstream_of_the_engage_outputs(tmp_path: Path) -> None:
    names = engage_model_names(PROJECT)
    memberships = selected(PROJECT, tmp_path, "-s", "+engage_audience_memberships", "--resource-type", "model")
    assert set(names["audience"]) <= set(memberships)
    assert not set(names["trait"]) & set(memberships)
    traits = selected(PROJECT, tmp_path, "-s", "+engage_computed_traits", "--resource-type", "model")
    assert set(names["trait"]) <= set(traits)
    exposures = selected(PROJECT, tmp_path, "--resource-type", "exposure")
    assert exposures == ["clevertap_upload_api", "identify_jsonl_file", "segment_identify_calls"]
    feeding = selected(PROJECT, tmp_path, "-s", "+exposure:clevertap_upload_api", "--resource-type", "model")
    assert set(names["audience"]) | set(names["trait"]) <= set(feeding)


def test_a_new_audience_joins_the_lineage_when_the_list_is_written(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    (project / "models" / "audiences" / "lineage_check.sql").write_text(NEW_AUDIENCE)

    before = selected(project, tmp_path, "-s", "+engage_audience_memberships", "--resource-type", "model")
    assert "lineage_check" not in before
    warned = run_dbt(
        ["run-operation", "check_engage_lineage"], warehouse=tmp_path / "w.duckdb", work=tmp_path, project=project
    )
    assert any("lineage_check are published but not in the lineage" in message for message in warned.messages)

    assert write_engage_model_names(project) == project / OWN_FILE
    assert write_engage_model_names(project) is None, "written only when it changes"
    after = selected(project, tmp_path, "-s", "+engage_audience_memberships", "--resource-type", "model")
    assert "lineage_check" in after
