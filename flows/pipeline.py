"""The whole job, in sequence (DuckDB has one writer): load, build, sync."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

from prefect import flow, get_run_logger
from prefect.states import State

from ctsync.build import BuildResult
from ctsync.engage.summary import SyncSummary
from flows.artifacts import publish_pipeline_summary
from flows.build import build_audiences
from flows.load import load_clevertap_exports
from flows.outcomes import IncompleteRun
from flows.sync import sync_audiences


@flow(name="clevertap-engage-pipeline")
def clevertap_engage_pipeline(
    destination: str = "jsonl",
    export: str | None = None,
    as_of: datetime | None = None,
    dry_run: bool = False,
    warehouse: str | None = None,
    config: str | None = None,
    allow_mass_change: bool = False,
    lake: str | None = None,
) -> dict[str, dict[str, int]]:
    """Load due exports (or ``export``), rebuild audiences and traits, sync what changed.

    Publishes one summary of the run (load counts, build sizes, sync counts per audience and trait)
    and ends Failed when any step failed, naming each. A load that ran but left some files unloaded
    (a bad file) does not hold back the rest: what did load is whole (each batch commits with its
    bookkeeping), so audiences are built from it and synced. A load that could not run at all (the
    warehouse unreachable or still busy after retries, a settings file with problems) stops the
    pipeline, and so does a failed build: nothing is synced from a build that did not finish. A sync
    the mass-change guard refuses sends nothing; ``allow_mass_change`` sends it once the build is checked.
    With a lake (``lake`` or ``CTSYNC_LAKE``) the load goes there and the build refuses the lake's state
    database (it holds no rows): build the lake on Spark instead (docs/lake.md).
    """
    summary = PipelineSummary(destination)
    loaded = load_clevertap_exports(export=export, config=config, warehouse=warehouse, lake=lake, return_state=True)
    summary.load = result_of(loaded)
    failures = [] if loaded.is_completed() else [failure_of("load", loaded)]
    if failures and not isinstance(loaded.result(raise_on_failure=False), IncompleteRun):
        summary.stop(failures, "build and sync did not run")
    built = build_audiences(as_of=as_of, warehouse=warehouse, return_state=True)
    summary.build = result_of(built)
    if not built.is_completed():
        summary.stop([*failures, failure_of("build", built)], "sync did not run")
    synced = sync_audiences(
        destination=destination,
        dry_run=dry_run,
        warehouse=warehouse,
        config=config,
        allow_mass_change=allow_mass_change,
        return_state=True,
    )
    summary.sync = result_of(synced)
    if not synced.is_completed():
        failures.append(failure_of("sync", synced))
    if failures:
        summary.stop(failures, "every step ran")
    summary.publish([])
    return summary.results()


class PipelineSummary:
    """What each step returned, published as one artifact when the pipeline ends."""

    def __init__(self, destination: str) -> None:
        self.destination = destination
        self.load: object = None
        self.build: object = None
        self.sync: object = None

    def publish(self, failures: list[str]) -> None:
        publish_pipeline_summary(self.destination, load=self.load, build=self.build, sync=self.sync, failures=failures)

    def stop(self, failures: list[str], consequence: str) -> NoReturn:
        self.publish(failures)
        stop(failures, consequence)

    def results(self) -> dict[str, dict[str, int]]:
        load = self.load if isinstance(self.load, dict) else {}
        build = self.build.counts if isinstance(self.build, BuildResult) else {}
        sync = self.sync.counts() if isinstance(self.sync, SyncSummary) else {}
        return {"load": load, "build": build, "sync": sync}


def result_of(state: State[Any]) -> object:
    """What the step returned; for a step that ended Failed after finishing its work, what it would have."""
    outcome = state.result(raise_on_failure=False)
    return outcome.result if isinstance(outcome, IncompleteRun) else outcome


def failure_of(step: str, state: State[Any]) -> str:
    outcome = state.result(raise_on_failure=False)
    return f"{step}: {outcome}" if isinstance(outcome, BaseException) else f"{step}: {state.message}"


def stop(failures: list[str], consequence: str) -> NoReturn:
    for failure in failures:
        get_run_logger().error(failure)
    raise IncompleteRun(f"{len(failures)} step(s) failed ({consequence}): " + " | ".join(failures))


if __name__ == "__main__":
    clevertap_engage_pipeline()
