"""The whole job, in sequence (DuckDB has one writer): load, build, sync."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

from prefect import flow, get_run_logger
from prefect.states import State

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
) -> dict[str, dict[str, int]]:
    """Load due exports (or ``export``), rebuild audiences and traits, sync what changed.

    Ends Failed when any step failed, naming each. A load that ran but left some files unloaded (a
    bad file) does not hold back the rest: what did load is whole (each batch commits with its
    bookkeeping), so audiences are built from it and synced. A load that could not run at all (the
    warehouse unreachable or still busy after retries, a settings file with problems) stops the
    pipeline, and so does a failed build: nothing is synced from a build that did not finish.
    """
    loaded = load_clevertap_exports(export=export, config=config, warehouse=warehouse, return_state=True)
    failures = [] if loaded.is_completed() else [failure_of("load", loaded)]
    if failures and not isinstance(loaded.result(raise_on_failure=False), IncompleteRun):
        stop(failures, "build and sync did not run")
    built = build_audiences(as_of=as_of, warehouse=warehouse, return_state=True)
    if not built.is_completed():
        stop([*failures, failure_of("build", built)], "sync did not run")
    synced = sync_audiences(
        destination=destination, dry_run=dry_run, warehouse=warehouse, config=config, return_state=True
    )
    if not synced.is_completed():
        failures.append(failure_of("sync", synced))
    if failures:
        stop(failures, "every step ran")
    return {"load": loaded.result(), "build": built.result(), "sync": synced.result()}


def failure_of(step: str, state: State[Any]) -> str:
    outcome = state.result(raise_on_failure=False)
    return f"{step}: {outcome}" if isinstance(outcome, BaseException) else f"{step}: {state.message}"


def stop(failures: list[str], consequence: str) -> NoReturn:
    for failure in failures:
        get_run_logger().error(failure)
    raise IncompleteRun(f"{len(failures)} step(s) failed ({consequence}): " + " | ".join(failures))


if __name__ == "__main__":
    clevertap_engage_pipeline()
