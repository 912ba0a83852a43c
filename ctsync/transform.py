"""Running the dbt project (``dbt build``) through dbt's Python API."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ctsync.errors import CtsyncError, WarehouseBusy
from ctsync.warehouse.connection import parse_warehouse

LogCallback = Callable[[str, str], None]
"""Receives (level, message) for each line dbt logs: info, warn, error, debug."""


@dataclass
class BuildResult:
    success: bool
    counts: dict[str, int] = field(default_factory=dict)
    """Nodes by ``<resource type> <status>``, e.g. ``model success``, ``test pass``, ``unit_test fail``."""
    failures: list[str] = field(default_factory=list)
    """``<node>: <message>`` for every node that errored or failed."""
    seconds: float = 0.0


def project_dir() -> Path:
    """The dbt project: ``CTSYNC_PROJECT_DIR``, else the folder holding dbt_project.yml above this package."""
    configured = os.environ.get("CTSYNC_PROJECT_DIR")
    if configured:
        return Path(configured)
    for folder in (Path.cwd(), *Path(__file__).resolve().parents):
        if (folder / "dbt_project.yml").is_file():
            return folder
    raise CtsyncError("no dbt_project.yml found: run from the project folder or set CTSYNC_PROJECT_DIR")


@contextmanager
def _warehouse_environment(warehouse: str | None) -> Iterator[None]:
    """profiles.yml reads the warehouse from CTSYNC_WAREHOUSE; set it for the duration of the build."""
    if warehouse is None:
        yield
        return
    target = parse_warehouse(warehouse)
    previous = os.environ.get("CTSYNC_WAREHOUSE")
    os.environ["CTSYNC_WAREHOUSE"] = target.location if target.kind == "duckdb" else warehouse
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("CTSYNC_WAREHOUSE", None)
        else:
            os.environ["CTSYNC_WAREHOUSE"] = previous


def build_models(
    *,
    warehouse: str | None = None,
    target: str | None = None,
    as_of: datetime | None = None,
    select: Sequence[str] = (),
    full_refresh: bool = False,
    on_log: LogCallback | None = None,
    project: Path | None = None,
) -> BuildResult:
    """``dbt build`` the project: seeds, models, snapshots and tests, in DAG order.

    ``as_of`` pins the time memberships and traits are computed for (the ``as_of`` var).
    """
    from dbt.cli.main import dbtRunner

    folder = project or project_dir()
    args = ["build", "--project-dir", str(folder), "--profiles-dir", str(folder)]
    if target:
        args += ["--target", target]
    if as_of is not None:
        args += ["--vars", json.dumps({"as_of": as_of.isoformat()})]
    for selector in select:
        args += ["--select", selector]
    if full_refresh:
        args.append("--full-refresh")
    messages: list[str] = []

    def forward(event: Any) -> None:
        info = getattr(event, "info", None)
        if info is None:
            return
        level = str(getattr(info, "level", "info"))
        message = str(getattr(info, "msg", ""))
        if level in ("warn", "error"):
            messages.append(message)
        if on_log is not None and message and level != "debug":
            on_log(level, message)

    started = datetime.now()
    with _warehouse_environment(warehouse):
        result = dbtRunner(callbacks=[forward]).invoke(args)
    seconds = (datetime.now() - started).total_seconds()
    if result.exception is not None:
        text = str(result.exception)
        if "lock" in text.lower() and "duckdb" in text.lower():
            raise WarehouseBusy(f"the warehouse is open for writing by another process: {text}")
        raise CtsyncError(f"dbt build could not run: {text}")
    counts: Counter[str] = Counter()
    failures: list[str] = []
    for node_result in getattr(result.result, "results", None) or []:
        node = node_result.node
        status = str(getattr(node_result.status, "value", node_result.status))
        counts[f"{node.resource_type} {status}"] += 1
        if status in ("error", "fail"):
            failures.append(f"{node.unique_id}: {node_result.message}")
    return BuildResult(success=bool(result.success), counts=dict(counts), failures=failures, seconds=seconds)
