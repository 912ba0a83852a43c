"""Publishing each run's counts as Prefect artifacts (visible on the run's page).

Every run: a table of its counts. A sync run: also a table per audience and trait. A build run:
also the sources it read and the size of each audience and trait. A pipeline run: one summary of
its load, build and sync.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from ctsync.build import BuildResult
from ctsync.engage.summary import ComputationCounts, SyncSummary


def artifact_key(key: str) -> str:
    """Prefect's artifact keys take lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")


def publish_counts(key: str, title: str, counts: Mapping[str, object]) -> None:
    """One artifact per run; ``key`` groups runs of the same kind in the UI."""
    rows = [{"count": name, "value": value} for name, value in counts.items()]
    create_table_artifact(key=artifact_key(key), table=rows, description=title)


def publish_computations(key: str, title: str, computations: Sequence[ComputationCounts]) -> None:
    """A sync's counts per audience and trait (``<key>-computations``), one row each."""
    rows = [counts.as_row() for counts in computations]
    create_table_artifact(
        key=artifact_key(f"{key}-computations"),
        table=rows or [{"class": "", "key": "nothing changed"}],
        description=f"{title}, per audience and trait",
    )


def publish_sizes(key: str, title: str, build: BuildResult) -> None:
    """A build's audience and trait sizes (``<key>-sizes``), and the sources it read."""
    create_table_artifact(
        key=artifact_key(f"{key}-sizes"),
        table=size_rows(build) or [{"class": "", "key": "no sizes recorded", "size": ""}],
        description=f"{title}; sources read: {', '.join(build.sources) or 'none'}",
    )


def size_rows(build: BuildResult) -> list[dict[str, object]]:
    return [{"class": "audience", "key": key, "size": size} for key, size in sorted(build.audience_sizes.items())] + [
        {"class": "trait", "key": key, "size": size} for key, size in sorted(build.trait_sizes.items())
    ]


def publish_pipeline_summary(
    destination: str,
    *,
    load: object,
    build: object,
    sync: object,
    failures: Sequence[str],
) -> None:
    """One markdown artifact on a pipeline run: what its load, build and sync did (each the step's
    result: a load's counts, a BuildResult, a SyncSummary; anything else means it did not get that far)."""
    lines = [f"# Pipeline: load, build, sync to {destination}", ""]
    if failures:
        lines += ["**Failed steps**", "", *(f"- {_cell(failure)}" for failure in failures), ""]
    lines += ["## Load", "", *_load_section(load), "", "## Build", "", *_build_section(build), ""]
    lines += [f"## Sync to {destination}", "", *_sync_section(sync)]
    create_markdown_artifact(
        key=artifact_key(f"pipeline-{destination}"),
        markdown="\n".join(lines) + "\n",
        description=f"Pipeline to {destination}: load, build, sync",
    )


def _load_section(load: object) -> list[str]:
    if not isinstance(load, Mapping):
        return ["did not run"]
    return _table([{"count": name, "value": value} for name, value in load.items()])


def _build_section(build: object) -> list[str]:
    if not isinstance(build, BuildResult):
        return ["did not run"]
    outcome = "succeeded" if build.success else "FAILED"
    lines = [f"dbt build {outcome} in {build.seconds:.0f} s; sources read: {', '.join(build.sources) or 'none'}", ""]
    if not build.success:
        return lines + [f"- {_cell(failure)}" for failure in build.failures[:20]]
    return lines + _table(size_rows(build))


def _sync_section(sync: object) -> list[str]:
    if not isinstance(sync, SyncSummary):
        return ["did not run"]
    lines = [f"run {sync.run_id}: **{sync.status}**" + (" (dry run)" if sync.dry_run else ""), ""]
    if sync.mass_change:
        lines += [_cell(sync.mass_change), ""]
    lines += _table([{"count": name, "value": value} for name, value in sync.counts().items()])
    lines += ["", "Per audience and trait:", ""]
    return lines + (_table([c.as_row() for c in sync.computations]) if sync.computations else ["nothing changed"])


def _table(rows: Iterable[Mapping[str, object]]) -> list[str]:
    """A markdown table of ``rows`` (the columns of the first row)."""
    rows = list(rows)
    if not rows:
        return ["none"]
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(_number(row.get(column, ""))) for column in columns) + " |")
    return lines


def _number(value: object) -> object:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
