"""Backfills: load an export's files again for a range of days, as a one-time export would.

A backfill uses the export's own settings (location, data type, identifier priority, timezone)
with a one-time window, checked by CleverTap's rule: at most the last 60 days, none in the
future. It does not change the export's status or schedule. Rows already loaded are not
inserted twice (the loader deduplicates by ``id``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from pydantic import ValidationError

from ctsync.errors import CtsyncError
from ctsync.jobs.definitions import ExportJob, Frequency, one_time_window, read_exports_file
from ctsync.jobs.runner import ExportEnvironment, load_job, load_problems, utc_now
from ctsync.warehouse.loader import LoadSummary, ProgressCallback


@dataclass(frozen=True)
class BackfillResult:
    export: str
    window: tuple[date, date]
    summary: LoadSummary

    @property
    def error(self) -> str | None:
        """Why some files did not fully load (failed, unsupported, truncated or corrupt); None when all did."""
        return load_problems(self.summary)


def backfill_job(job: ExportJob, start: date, end: date) -> ExportJob:
    """The export as a one-time export over ``start``..``end``."""
    if end < start:
        raise CtsyncError(f"a backfill ends ({end}) before it starts ({start})")
    try:
        frequency = Frequency.model_validate({"one_time": {"from": start.isoformat(), "to": end.isoformat()}})
    except ValidationError as exc:
        reasons = "; ".join(str(error["msg"]) for error in exc.errors())
        raise CtsyncError(f"backfill of {job.name!r}: {reasons}") from None
    return job.model_copy(update={"frequency": frequency})


def backfill_window(job: ExportJob, start: date, end: date, now: datetime | None = None) -> tuple[date, date]:
    """``start``..``end`` if CleverTap would accept it as a one-time export; CtsyncError otherwise."""
    return one_time_window(backfill_job(job, start, end), now or utc_now())


def run_backfill(
    export: str,
    start: date,
    end: date,
    *,
    config: Path | str | None = None,
    warehouse: str | None = None,
    workspace_region: str | None = None,
    now: datetime | None = None,
    progress: ProgressCallback | None = None,
    lake: str | None = None,
) -> BackfillResult:
    """Load ``export``'s files for the days ``start``..``end`` (inclusive, the export's local dates),
    exactly as a run of the export would (``load_job``: a relative location is read from the settings
    file's folder)."""
    environment = ExportEnvironment.resolve(config, warehouse, workspace_region, lake=lake)
    exports = read_exports_file(environment.config, environment.catalog)
    exports.raise_for_problems()
    job = exports.job(export)
    window = backfill_window(job, start, end, now)
    summary = load_job(job, window, environment, progress=progress)
    return BackfillResult(export, window, summary)
