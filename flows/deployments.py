"""The deployments in prefect.yaml: checking them, writing them from ctsync.yml, serving them.

    python -m flows.deployments check          # prefect.yaml against ctsync.yml and the rules
    python -m flows.deployments write [--pipeline-every-hours 2] [--destination jsonl]

``write`` makes the pipeline, load and backfill deployments from ctsync.yml and keeps every other
deployment of prefect.yaml as it is (the event sync, a team's own).

Rules: the pipeline runs every 2 to 3 hours; every recurring export in ctsync.yml has its own
load deployment on the export's interval (4 to 24 hours); the backfill has no schedule; every
deployment allows one run at a time and cancels a new run while one is active (CANCEL_NEW).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from ctsync.errors import CtsyncError
from ctsync.exports.catalog import find_event_catalog, load_event_catalog
from ctsync.jobs.definitions import read_exports_file

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "prefect.yaml"
SETTINGS = ROOT / "ctsync.yml"

PIPELINE_ENTRYPOINT = "flows/pipeline.py:clevertap_engage_pipeline"
LOAD_ENTRYPOINT = "flows/load.py:load_clevertap_exports"
BACKFILL_ENTRYPOINT = "flows/backfill.py:backfill_clevertap_export"
PIPELINE_HOURS = (2.0, 3.0)
EXPORT_HOURS = (4, 24)
CONCURRENCY = {"limit": 1, "collision_strategy": "CANCEL_NEW"}
WORK_POOL = {"name": "ctsync"}


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    entrypoint: str
    parameters: dict[str, Any] = field(default_factory=dict)
    interval_seconds: int | None = None
    description: str = ""
    concurrency_limit: dict[str, Any] = field(default_factory=dict)


def read_prefect_yaml(path: Path = PREFECT_YAML) -> list[DeploymentSpec]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CtsyncError(f"cannot read {path}: {exc}") from exc
    specs = []
    for entry in document.get("deployments") or []:
        schedules = entry.get("schedules") or []
        intervals = [int(schedule["interval"]) for schedule in schedules if "interval" in schedule]
        if len(schedules) > 1 or len(intervals) != len(schedules):
            raise CtsyncError(f"{path}: deployment {entry.get('name')!r} must have at most one interval schedule")
        specs.append(
            DeploymentSpec(
                name=str(entry["name"]),
                entrypoint=str(entry["entrypoint"]),
                parameters=dict(entry.get("parameters") or {}),
                interval_seconds=intervals[0] if intervals else None,
                description=str(entry.get("description") or ""),
                concurrency_limit=dict(entry.get("concurrency_limit") or {}),
            )
        )
    return specs


def recurring_exports(settings: Path = SETTINGS) -> dict[str, int]:
    """Recurring export name -> every_hours, from the settings file."""
    catalog = load_event_catalog(find_event_catalog(settings.resolve().parent))
    exports = read_exports_file(settings, catalog)
    exports.raise_for_problems()
    return {job.name: job.frequency.every_hours for job in exports.jobs if job.frequency.every_hours is not None}


def check(specs: Sequence[DeploymentSpec], exports: dict[str, int]) -> list[str]:
    """Every way ``specs`` break the rules; empty when they are fine."""
    problems: list[str] = []
    pipelines = [spec for spec in specs if spec.entrypoint == PIPELINE_ENTRYPOINT]
    if len(pipelines) != 1:
        problems.append(f"expected exactly one pipeline deployment ({PIPELINE_ENTRYPOINT}), found {len(pipelines)}")
    for spec in pipelines:
        hours = (spec.interval_seconds or 0) / 3600
        if not PIPELINE_HOURS[0] <= hours <= PIPELINE_HOURS[1]:
            problems.append(f"{spec.name}: the pipeline must run every 2 to 3 hours, not every {hours:g} hours")
    loads = {str(spec.parameters.get("export")): spec for spec in specs if spec.entrypoint == LOAD_ENTRYPOINT}
    for name, every_hours in exports.items():
        load = loads.get(name)
        if load is None:
            problems.append(f"recurring export {name!r} has no load deployment")
        elif load.interval_seconds != every_hours * 3600:
            problems.append(
                f"{load.name}: export {name!r} recurs every {every_hours} hours in ctsync.yml, "
                f"but the deployment runs every {(load.interval_seconds or 0) / 3600:g} hours"
            )
    for name, spec in loads.items():
        if name not in exports:
            problems.append(f"{spec.name}: {name!r} is not a recurring export in ctsync.yml")
        hours = (spec.interval_seconds or 0) / 3600
        if not EXPORT_HOURS[0] <= hours <= EXPORT_HOURS[1]:
            problems.append(f"{spec.name}: exports load every 4 to 24 hours, not every {hours:g} hours")
    backfills = [spec for spec in specs if spec.entrypoint == BACKFILL_ENTRYPOINT]
    if len(backfills) != 1:
        problems.append(f"expected exactly one backfill deployment ({BACKFILL_ENTRYPOINT}), found {len(backfills)}")
    problems += [
        f"{spec.name}: a backfill runs when asked, it has no schedule" for spec in backfills if spec.interval_seconds
    ]
    for spec in specs:
        if spec.concurrency_limit != CONCURRENCY:
            problems.append(f"{spec.name}: concurrency_limit must be {CONCURRENCY} (one run at a time)")
    return problems


GENERATED_ENTRYPOINTS = (PIPELINE_ENTRYPOINT, LOAD_ENTRYPOINT, BACKFILL_ENTRYPOINT)
"""The deployments ``write`` makes from ctsync.yml; it keeps every other one (the event sync, a team's own)."""


def kept_deployments(path: Path) -> list[dict[str, Any]]:
    """The deployments of ``path`` that ``write`` does not make from ctsync.yml, as they are written there."""
    if not path.exists():
        return []
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CtsyncError(f"cannot read {path}: {exc}") from exc
    return [
        dict(entry)
        for entry in document.get("deployments") or []
        if isinstance(entry, dict) and entry.get("entrypoint") not in GENERATED_ENTRYPOINTS
    ]


def render(
    exports: dict[str, int],
    *,
    pipeline_every_hours: float = 2.0,
    destination: str = "jsonl",
    kept: Sequence[dict[str, Any]] = (),
) -> str:
    """prefect.yaml for these exports; ``kept`` (deployments ctsync.yml does not describe) go before the backfill."""
    if not PIPELINE_HOURS[0] <= pipeline_every_hours <= PIPELINE_HOURS[1]:
        raise CtsyncError(f"the pipeline runs every 2 to 3 hours, not every {pipeline_every_hours:g}")
    deployments: list[dict[str, Any]] = [
        {
            "name": "engage-pipeline",
            "description": "Load due exports, dbt build, sync changed memberships and traits.",
            "entrypoint": PIPELINE_ENTRYPOINT,
            "parameters": {"destination": destination},
            "schedules": [{"interval": int(pipeline_every_hours * 3600)}],
            "concurrency_limit": dict(CONCURRENCY),
            "work_pool": dict(WORK_POOL),
        }
    ]
    for name, hours in exports.items():
        deployments.append(
            {
                "name": f"load-{name}",
                "description": f"Load the recurring export {name} every {hours} hours.",
                "entrypoint": LOAD_ENTRYPOINT,
                "parameters": {"export": name},
                "schedules": [{"interval": hours * 3600}],
                "concurrency_limit": dict(CONCURRENCY),
                "work_pool": dict(WORK_POOL),
            }
        )
    deployments.extend(dict(entry) for entry in kept)
    deployments.append(
        {
            "name": "backfill",
            "description": "Load an export's files for a date range (at most the last 60 days).",
            "entrypoint": BACKFILL_ENTRYPOINT,
            "parameters": {"export": next(iter(exports), "")},
            "concurrency_limit": dict(CONCURRENCY),
            "work_pool": dict(WORK_POOL),
        }
    )
    header = (
        "# Deployments of ctsync's flows. Written by `python -m flows.deployments write` from ctsync.yml;\n"
        "# checked by `python -m flows.deployments check`. Serve them locally with `python -m flows.serve`,\n"
        "# or register them on a Prefect server with `prefect deploy --all` (see the README).\n"
    )
    body = {"name": "ctsync", "prefect-version": "3.8", "deployments": deployments}
    return header + yaml.safe_dump(body, sort_keys=False)


def runner_deployments(specs: Sequence[DeploymentSpec]) -> list[Any]:
    """RunnerDeployments for ``serve``: the same names, parameters, schedules and limits."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    result = []
    for spec in specs:
        module_path, function = spec.entrypoint.split(":")
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, function)
        limit = ConcurrencyLimitConfig(
            limit=int(spec.concurrency_limit.get("limit", 1)),
            collision_strategy=ConcurrencyLimitStrategy(spec.concurrency_limit.get("collision_strategy", "CANCEL_NEW")),
        )
        result.append(
            flow.to_deployment(
                name=spec.name,
                parameters=spec.parameters,
                interval=timedelta(seconds=spec.interval_seconds) if spec.interval_seconds else None,
                concurrency_limit=limit,
                description=spec.description or None,
            )
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.deployments", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="check prefect.yaml against ctsync.yml and the rules")
    write = sub.add_parser("write", help="write prefect.yaml from ctsync.yml")
    write.add_argument("--pipeline-every-hours", type=float, default=2.0)
    write.add_argument("--destination", default="jsonl")
    args = parser.parse_args(argv)
    try:
        exports = recurring_exports()
        if args.command == "write":
            PREFECT_YAML.write_text(
                render(
                    exports,
                    pipeline_every_hours=args.pipeline_every_hours,
                    destination=args.destination,
                    kept=kept_deployments(PREFECT_YAML),
                ),
                encoding="utf-8",
            )
            print(f"wrote {PREFECT_YAML.name}")
        problems = check(read_prefect_yaml(PREFECT_YAML), exports)
    except CtsyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if not problems:
        print(f"{PREFECT_YAML.name}: deployments are in bounds")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
