"""prefect.yaml: parses, schedules in bounds, one run at a time; a stopped export pauses its deployment."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ctsync.jobs.runner import stop_export
from flows import deployments
from flows.deployments import DeploymentSpec, check, read_prefect_yaml, recurring_exports, render, runner_deployments
from flows.load import load_clevertap_exports
from tests.flows.conftest import write_settings


def test_committed_prefect_yaml_is_valid_and_matches_ctsync_yml() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel  # what `prefect deploy` parses it with

    document = yaml.safe_load(deployments.PREFECT_YAML.read_text())
    PrefectYamlModel.model_validate(document)
    specs = read_prefect_yaml()
    exports = recurring_exports()
    assert check(specs, exports) == []
    by_entrypoint = {spec.entrypoint: spec for spec in specs}
    assert 2 * 3600 <= (by_entrypoint[deployments.PIPELINE_ENTRYPOINT].interval_seconds or 0) <= 3 * 3600
    loads = [spec for spec in specs if spec.entrypoint == deployments.LOAD_ENTRYPOINT]
    assert {spec.parameters["export"]: spec.interval_seconds for spec in loads} == {
        name: hours * 3600 for name, hours in exports.items()
    }
    assert all(spec.concurrency_limit == {"limit": 1, "collision_strategy": "CANCEL_NEW"} for spec in specs)
    assert by_entrypoint[deployments.BACKFILL_ENTRYPOINT].interval_seconds is None


def test_the_rules_catch_out_of_bounds_schedules() -> None:
    exports = {"events": 6}
    good = read_prefect_yaml_text(render(exports))
    assert check(good, exports) == []

    def replace(name: str, **changes: object) -> list[DeploymentSpec]:
        return [DeploymentSpec(**{**spec.__dict__, **changes}) if spec.name == name else spec for spec in good]

    assert any("2 to 3 hours" in p for p in check(replace("engage-pipeline", interval_seconds=4 * 3600), exports))
    assert any("every 6 hours" in p for p in check(replace("load-events", interval_seconds=2 * 3600), exports))
    assert any("4 to 24 hours" in p for p in check(replace("load-events", interval_seconds=2 * 3600), {"events": 2}))
    assert any("no load deployment" in p for p in check(good, {"events": 6, "profiles": 24}))
    assert any("concurrency_limit" in p for p in check(replace("backfill", concurrency_limit={}), exports))
    assert any("no schedule" in p for p in check(replace("backfill", interval_seconds=3600), exports))
    with pytest.raises(Exception, match="2 to 3 hours"):
        render(exports, pipeline_every_hours=1.5)


def read_prefect_yaml_text(text: str) -> list[DeploymentSpec]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prefect.yaml"
        path.write_text(text)
        return read_prefect_yaml(path)


def test_an_overlapping_run_is_refused() -> None:
    """Registered as served, the pipeline deployment lets one run at a time and cancels the next."""
    from prefect.client.orchestration import get_client
    from prefect.states import Pending, Running

    spec = next(s for s in read_prefect_yaml() if s.entrypoint == deployments.PIPELINE_ENTRYPOINT)
    [deployment] = runner_deployments([spec])
    deployment_id = deployment.apply()
    with get_client(sync_client=True) as client:
        first = client.create_flow_run_from_deployment(deployment_id)
        second = client.create_flow_run_from_deployment(deployment_id)
        assert client.set_flow_run_state(first.id, Pending()).status.value == "ACCEPT"
        client.set_flow_run_state(first.id, Running())
        refused = client.set_flow_run_state(second.id, Pending())
        assert refused.status.value == "REJECT"
        assert client.read_flow_run(second.id).state.type.value == "CANCELLED"
        assert client.read_flow_run(first.id).state.type.value == "RUNNING"


def test_stopping_an_export_pauses_its_deployment(
    tmp_path: Path, sample_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    config = write_settings(tmp_path, sample_export)
    warehouse = str(tmp_path / "stopped.duckdb")
    load_clevertap_exports(export="events", config=str(config), warehouse=warehouse)
    assert stop_export("events", config=config, warehouse=warehouse)
    deployment_id = load_clevertap_exports.to_deployment(name="load-events", parameters={"export": "events"}).apply()
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__ID", str(deployment_id))
    counts = load_clevertap_exports(export="events", config=str(config), warehouse=warehouse)
    assert counts["exports run"] == 0
    with get_client(sync_client=True) as client:
        assert client.read_deployment(deployment_id).paused is True


def test_write_keeps_the_deployments_ctsync_yml_does_not_describe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event sync (and a team's own deployment) survive `python -m flows.deployments write`."""
    target = tmp_path / "prefect.yaml"
    target.write_text(deployments.PREFECT_YAML.read_text())
    before = {entry["name"]: entry for entry in yaml.safe_load(target.read_text())["deployments"]}
    events = next(
        entry for entry in before.values() if entry["entrypoint"] == "flows/events.py:sync_events_to_clevertap"
    )
    monkeypatch.setattr(deployments, "PREFECT_YAML", target)
    assert deployments.main(["write"]) == 0
    after = {entry["name"]: entry for entry in yaml.safe_load(target.read_text())["deployments"]}
    assert after[events["name"]] == events
    assert set(after) == set(before)
