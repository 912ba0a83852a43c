"""Build audiences and computed traits: ``dbt build`` through dbt's Python API."""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger, task

from ctsync.build import BuildResult, build_models
from flows.artifacts import publish_counts, publish_sizes
from flows.outcomes import IncompleteRun


@task
def dbt_build(warehouse: str | None, target: str | None, as_of: datetime | None, select: list[str]) -> BuildResult:
    """Not retried: a failing model or test fails the same way again."""
    logger = get_run_logger()

    def forward(level: str, message: str) -> None:
        {"warn": logger.warning, "error": logger.error}.get(level, logger.info)(message)

    return build_models(warehouse=warehouse, target=target, as_of=as_of, select=select, on_log=forward)


@flow(name="build-audiences")
def build_audiences(
    as_of: datetime | None = None,
    target: str | None = None,
    warehouse: str | None = None,
    select: list[str] | None = None,
) -> BuildResult:
    """Compute audience memberships and computed traits as of ``as_of`` (default: now).

    Publishes dbt's counts, and the sources read with the size of every audience and trait built.
    """
    result = dbt_build(warehouse, target, as_of, select or [])
    publish_counts("build-audiences", "dbt build", result.counts)
    publish_sizes("build-audiences", "Audience and trait sizes", result)
    if not result.success:
        raise IncompleteRun("dbt build failed:\n" + "\n".join(result.failures[:20]), result)
    return result


if __name__ == "__main__":
    build_audiences()
