"""Running the dbt project (``dbt build``) through dbt's Python API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import yaml

from ctsync.errors import CtsyncError, WarehouseBusy
from ctsync.lineage import write_engage_model_names
from ctsync.sources import ClevertapSources, find_clevertap_sources, reading, require_clevertap_sources
from ctsync.warehouse.connection import WarehouseTarget, parse_warehouse
from ctsync.warehouse.lake.batches import BATCHES_TABLE
from ctsync.warehouse.targets import Target

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
    sources: list[str] = field(default_factory=list)
    """The CleverTap schemas the build read (one per nickname loaded)."""
    audience_sizes: dict[str, int] = field(default_factory=dict)
    """Members of each audience this build computed, by audience key (what the sync sends)."""
    trait_sizes: dict[str, int] = field(default_factory=dict)
    """People with a value of each computed trait this build computed, by trait key."""


def project_dir() -> Path:
    """The dbt project: ``CTSYNC_PROJECT_DIR``, else the folder holding dbt_project.yml above this package."""
    configured = os.environ.get("CTSYNC_PROJECT_DIR")
    if configured:
        return Path(configured)
    for folder in (Path.cwd(), *Path(__file__).resolve().parents):
        if (folder / "dbt_project.yml").is_file():
            return folder
    raise CtsyncError(
        "no dbt_project.yml here or above: run from the project folder, set CTSYNC_PROJECT_DIR, "
        "or create a project with `ctsync init DIR`"
    )


def _child_environment(warehouse: str | None) -> dict[str, str]:
    """The child's environment: profiles.yml reads the warehouse from CTSYNC_WAREHOUSE (DuckDB) or
    CTSYNC_PG_* (PostgreSQL, filled in from a postgresql:// warehouse URL)."""
    environment = dict(os.environ)
    location = warehouse if warehouse is not None else environment.get("CTSYNC_WAREHOUSE")
    if not location:
        return environment
    target = parse_warehouse(location)
    if target.kind == "duckdb":
        environment["CTSYNC_WAREHOUSE"] = target.location
        return environment
    url = urlsplit(target.location)
    environment.update(
        {
            "CTSYNC_WAREHOUSE": target.location,
            "CTSYNC_DBT_TARGET": environment.get("CTSYNC_DBT_TARGET", "postgres"),
            "CTSYNC_PG_HOST": url.hostname or "localhost",
            "CTSYNC_PG_PORT": str(url.port or 5432),
            "CTSYNC_PG_USER": unquote(url.username or "postgres"),
            "CTSYNC_PG_PASSWORD": unquote(url.password or ""),
            "CTSYNC_PG_DATABASE": unquote(url.path.lstrip("/") or "postgres"),
        }
    )
    return environment


def dbt_warehouse(environment: dict[str, str], target: str | None) -> WarehouseTarget:
    """The warehouse dbt will open, read the way profiles.yml reads it from ``environment``."""
    name = target or environment.get("CTSYNC_DBT_TARGET") or "duckdb"
    if name == "duckdb":
        where = parse_warehouse(environment.get("CTSYNC_WAREHOUSE") or "warehouse.duckdb")
        if where.kind != "duckdb":
            raise CtsyncError(
                f"dbt's duckdb target reads a DuckDB file, but the warehouse is {where.describe()}: "
                "use --target postgres (or leave --target out)"
            )
        return where
    if name == "postgres":
        user = quote(environment.get("CTSYNC_PG_USER") or "postgres", safe="")
        password = quote(environment.get("CTSYNC_PG_PASSWORD") or "", safe="")
        host = environment.get("CTSYNC_PG_HOST") or "localhost"
        port = environment.get("CTSYNC_PG_PORT") or "5432"
        database = quote(environment.get("CTSYNC_PG_DATABASE") or "ctsync", safe="")
        credentials = f"{user}:{password}" if password else user
        return WarehouseTarget("postgres", f"postgresql://{credentials}@{host}:{port}/{database}")
    raise CtsyncError(f"unknown dbt target {name!r}: profiles.yml has the targets duckdb, postgres and spark")


CATALOG_ADAPTERS = ("spark", "databricks")
"""dbt adapters whose warehouse ctsync does not open itself: dbt looks in their catalog for the sources
and reads back the sizes (``dbt run-operation``), in the process that runs the build."""


def profile_target_type(folder: Path, name: str) -> str | None:
    """The adapter (``type``) of the output ``name`` of the project's profile in ``folder/profiles.yml``;
    None when there is no such output."""
    try:
        project = yaml.safe_load((folder / "dbt_project.yml").read_text(encoding="utf-8")) or {}
        profiles = yaml.safe_load((folder / "profiles.yml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    profile = profiles.get(str(project.get("profile") or "ctsync")) if isinstance(profiles, dict) else None
    outputs = profile.get("outputs") if isinstance(profile, dict) else None
    output = outputs.get(name) if isinstance(outputs, dict) else None
    kind = output.get("type") if isinstance(output, dict) else None
    return str(kind) if kind else None


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

    Refused (CtsyncError, nothing run) when the warehouse has nothing to build from: a DuckDB
    file that does not exist (it is not created), or no schema that ``ctsync load`` wrote events
    to. The schemas found are passed to dbt as the var ``clevertap_schemas``. ``as_of`` pins the
    time memberships and traits are computed for (the ``as_of`` var). After a successful build
    the result carries the sizes it recorded in ``engage.audience_size_history``.

    dbt runs through its Python API in a child Python process (``python -m ctsync.build``):
    dbt-duckdb keeps its DuckDB handle (and dbt its global state) for the life of the process,
    which would lock the warehouse for the steps after. Its log lines come back as they happen.
    """
    folder = project or project_dir()
    named = target or os.environ.get("CTSYNC_DBT_TARGET")
    if named and named not in ("duckdb", "postgres") and profile_target_type(folder, named) in CATALOG_ADAPTERS:
        return _build_in_catalog(
            folder, named, target=target, as_of=as_of, select=select, full_refresh=full_refresh, on_log=on_log
        )
    environment = _child_environment(warehouse)
    where = dbt_warehouse(environment, target)
    with reading(where) as reader:
        refuse_lake_state(reader, where)
        found = find_clevertap_sources(reader)
    sources = require_clevertap_sources(found, where)
    if found.without_events and on_log is not None:
        on_log("warn", f"not read, no event table yet: {', '.join(found.without_events)}")
    variables: dict[str, Any] = {"clevertap_schemas": sources}
    if as_of is not None:
        variables["as_of"] = as_of.isoformat()
    args = ["--no-use-colors", "--log-level", "none", "build"]
    args += ["--project-dir", str(folder), "--profiles-dir", str(folder)]
    args += ["--vars", json.dumps(variables)]
    if target:
        args += ["--target", target]
    for selector in select:
        args += ["--select", selector]
    if full_refresh:
        args.append("--full-refresh")
    started = time.perf_counter()
    listed = write_engage_model_names(folder)
    if listed is not None and on_log is not None:
        on_log("info", f"listed the audience and trait models for dbt's lineage in {listed}")
    if needs_packages(folder):
        deps = ["--no-use-colors", "--log-level", "none", "deps", "--project-dir", str(folder)]
        _run_child(deps, environment, on_log)
    outcome = _run_child(args, environment, on_log)
    result = BuildResult(
        success=outcome["success"],
        counts=outcome["counts"],
        failures=outcome["failures"],
        seconds=time.perf_counter() - started,
        sources=sources,
    )
    if result.success and outcome.get("build_id"):
        try:
            with reading(where) as reader:
                result.audience_sizes, result.trait_sizes = read_build_sizes(reader, str(outcome["build_id"]))
        except CtsyncError as exc:  # the build itself succeeded: say so, and why the sizes are missing
            if on_log is not None:
                on_log("warn", f"the sizes of this build could not be read back: {exc}")
    return result


def refuse_lake_state(reader: Target, where: WarehouseTarget) -> None:
    """Refuse to build on a lake's state database: its event tables are the lake's empty catalog (the rows
    are Parquet files in the lake), so every audience would come out empty."""
    rows = reader.execute(
        "select distinct table_schema from information_schema.tables "
        "where table_catalog = current_database() and table_name = ? order by 1",
        [BATCHES_TABLE],
    )
    if rows:
        schemas = ", ".join(str(row[0]) for row in rows)
        raise CtsyncError(
            f"{where.describe()} is the state database of a lake (schema(s) {schemas} were loaded into the lake): "
            "its tables hold no rows, so audiences built here would be empty. Register the lake's tables in "
            "Spark (`ctsync lake register --nickname NAME`) and build there (`dbt build --target spark`); "
            "see docs/lake.md"
        )


def _build_in_catalog(
    folder: Path,
    name: str,
    *,
    target: str | None,
    as_of: datetime | None,
    select: Sequence[str],
    full_refresh: bool,
    on_log: LogCallback | None,
) -> BuildResult:
    """``dbt build`` on a target whose warehouse ctsync cannot open (Spark, Databricks): its catalog.

    The guards of a DuckDB or PostgreSQL build run in the child, through dbt on the same target
    (``run-operation report_clevertap_sources``, the same discovery the models use): a catalog with no
    schema ``ctsync load`` wrote, or none with an event table, refuses the build before it runs. The
    sizes come back the same way (``run-operation report_build_sizes``). ``--warehouse`` is not read:
    the data is in the catalog. The schemas are not passed in ``clevertap_schemas``: every invocation
    gets the same vars, so dbt parses the project once (partial parsing), and the build finds the same
    schemas itself.
    """
    variables: dict[str, Any] = {}
    if as_of is not None:
        variables["as_of"] = as_of.isoformat()
    common = ["--project-dir", str(folder), "--profiles-dir", str(folder), "--vars", json.dumps(variables)]
    if target:
        common += ["--target", target]
    quiet = ["--no-use-colors", "--log-level", "none"]
    args = [*quiet, "build", *common]
    for selector in select:
        args += ["--select", selector]
    if full_refresh:
        args.append("--full-refresh")
    options = {
        "sources": [*quiet, "run-operation", "report_clevertap_sources", *common],
        "sizes": [*quiet, "run-operation", "report_build_sizes", *common],
    }
    if on_log is not None:
        on_log("info", f"target {name}: the CleverTap schemas are looked up in its catalog (--warehouse is not read)")
    started = time.perf_counter()
    environment = dict(os.environ)
    listed = write_engage_model_names(folder)
    if listed is not None and on_log is not None:
        on_log("info", f"listed the audience and trait models for dbt's lineage in {listed}")
    if needs_packages(folder):
        deps = [*quiet, "deps", "--project-dir", str(folder)]
        _run_child(deps, environment, on_log)
    outcome = _run_child(args, environment, on_log, options)
    found = outcome.get("sources") or {}
    sources = ClevertapSources(
        with_events=[str(schema) for schema in found.get("with_events", [])],
        without_events=[str(schema) for schema in found.get("without_events", [])],
    )
    if outcome.get("refused"):
        require_clevertap_sources(sources, f"the catalog of target {name}", catalog=True)
    if sources.without_events and on_log is not None:
        on_log("warn", f"not read, no event table yet: {', '.join(sources.without_events)}")
    result = BuildResult(
        success=outcome["success"],
        counts=outcome["counts"],
        failures=outcome["failures"],
        seconds=time.perf_counter() - started,
        sources=sources.with_events,
    )
    for kind, key, size in outcome.get("sizes") or []:
        sizes = result.audience_sizes if kind == "audience" else result.trait_sizes
        sizes[str(key)] = int(size)
    return result


def needs_packages(folder: Path) -> bool:
    """The project depends on dbt packages (ctsync's, in a project from ``ctsync init``) not installed yet."""
    return (folder / "packages.yml").is_file() and not any((folder / "dbt_packages").glob("*"))


def _run_child(
    args: list[str],
    environment: dict[str, str],
    on_log: LogCallback | None,
    options: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """dbt in a child process (``python -m ctsync.build``): its log lines as they come, then its outcome.
    ``options`` (see :func:`_child`) runs dbt operations before and after the build there."""
    child = subprocess.Popen(
        [sys.executable, "-m", "ctsync.build", json.dumps(args), json.dumps(options or {})],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    # Read stderr as it comes: a chatty child (Spark's JVM logs there) would otherwise fill the pipe and
    # stop, waiting for a reader, while this process waits for its stdout.
    stderr_tail: deque[str] = deque(maxlen=20)
    drain = threading.Thread(target=stderr_tail.extend, args=(child.stderr,), daemon=True)
    drain.start()
    outcome: dict[str, Any] | None = None
    for line in child.stdout:
        try:
            item = json.loads(line)
        except ValueError:
            continue  # not ours (a library printing to stdout)
        if "log" in item:
            if on_log is not None:
                on_log(item["log"][0], item["log"][1])
        elif "result" in item:
            outcome = item["result"]
    child.wait()
    drain.join()
    if outcome is None:
        tail = " | ".join([line.strip() for line in stderr_tail if line.strip()][-5:])
        raise CtsyncError(f"dbt build stopped without a result (exit code {child.returncode}): {tail}")
    exception = outcome["exception"]
    if exception is not None:
        if "lock" in exception.lower() and "duckdb" in exception.lower():
            raise WarehouseBusy(f"the warehouse is open for writing by another process: {exception}")
        raise CtsyncError(f"dbt build could not run: {exception}")
    return outcome


SIZE_HISTORY = "engage.audience_size_history"
"""Where every successful build appends its sizes (macros/engage/size_history.sql)."""


def read_build_sizes(reader: Target, build_id: str) -> tuple[dict[str, int], dict[str, int]]:
    """(audience sizes, trait sizes) one build recorded, by key."""
    rows = reader.execute(
        f"select computation_class, computation_key, size from {SIZE_HISTORY} where build_id = ? order by 2",
        [build_id],
    )
    audiences = {str(key): int(size) for kind, key, size in rows if kind == "audience"}
    traits = {str(key): int(size) for kind, key, size in rows if kind == "trait"}
    return audiences, traits


def _child(args: list[str], options: dict[str, list[str]] | None = None) -> None:
    """The child process: dbt's Python API; log lines and the outcome as JSON lines on stdout.

    ``options["sources"]``: the arguments of ``dbt run-operation report_clevertap_sources``, run first;
    the outcome carries what it found, and when no loaded schema has an event table the build is not
    run (``refused``). ``options["sizes"]``: those of ``dbt run-operation report_build_sizes``, run after
    a successful build with its id; the outcome carries the sizes. Both run in this process, on the
    build's connection (a Spark session started once).

    It leaves with ``os._exit``: dbt-duckdb never closes its DuckDB handle, and tearing the
    interpreter down around it only prints nanobind leak reports.
    """
    out = sys.stdout
    sys.stdout = sys.stderr  # anything else printed stays off the protocol

    def send(item: dict[str, Any]) -> None:
        out.write(json.dumps(item) + "\n")
        out.flush()

    try:
        send({"result": _build_with_operations(args, options or {}, send)})
    except Exception as exc:  # reported to the parent, which raises CtsyncError
        send({"result": {"success": False, "counts": {}, "failures": [], "exception": f"{type(exc).__name__}: {exc}"}})
    finally:
        out.flush()
        os._exit(0)


_REPORT_MARK = "ctsync:"
"""Log lines of ctsync's reporting macros start with it (``ctsync:sources {...}``): kept, not shown."""


def _build_with_operations(
    args: list[str], options: dict[str, list[str]], send: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    sources: dict[str, Any] | None = None
    if "sources" in options:
        sources = _operation(options["sources"], "sources", send)
        if not sources.get("with_events"):
            return {
                "success": False,
                "counts": {},
                "failures": [],
                "exception": None,
                "sources": sources,
                "refused": True,
            }
    result = _invoke_dbt(args, send)
    if sources is not None:
        result["sources"] = sources
    if result["success"] and "sizes" in options and result.get("build_id"):
        try:
            arguments = json.dumps({"build_id": result["build_id"]})
            result["sizes"] = _operation([*options["sizes"], "--args", arguments], "sizes", send)
        except Exception as exc:  # the build succeeded: say why the sizes are missing
            send({"log": ["warn", f"the sizes of this build could not be read back: {exc}"]})
    return result


def _operation(args: list[str], name: str, send: Callable[[dict[str, Any]], None]) -> Any:
    """Run ``dbt run-operation`` (``args``) and return what its macro logged as ``ctsync:<name> <json>``."""
    from dbt.cli.main import dbtRunner

    reported: list[Any] = []
    mark = f"{_REPORT_MARK}{name} "

    def collect(event: Any) -> None:
        info = getattr(event, "info", None)
        message = str(getattr(info, "msg", ""))
        if message.startswith(mark):
            reported.append(json.loads(message[len(mark) :]))
        elif message and str(getattr(info, "level", "debug")) in ("warn", "error"):
            send({"log": [str(info.level), message]})  # type: ignore[union-attr]

    result = dbtRunner(callbacks=[collect]).invoke(args)
    if result.exception is not None:
        raise CtsyncError(str(result.exception))
    if not result.success or not reported:
        raise CtsyncError(f"dbt run-operation {args[args.index('run-operation') + 1]} did not report")
    return reported[-1]


def _invoke_dbt(args: list[str], send: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    from dbt.cli.main import dbtRunner
    from dbt_common.invocation import get_invocation_id

    def forward(event: Any) -> None:
        info = getattr(event, "info", None)
        level = str(getattr(info, "level", "debug"))
        message = str(getattr(info, "msg", ""))
        if message and level != "debug" and not message.startswith(_REPORT_MARK):
            send({"log": [level, message]})

    result = dbtRunner(callbacks=[forward]).invoke(args)
    if result.exception is not None:
        return {"success": False, "counts": {}, "failures": [], "exception": str(result.exception)}
    build_id = get_invocation_id()  # the build_id of the rows the run recorded
    counts: Counter[str] = Counter()
    failures: list[str] = []
    for node_result in getattr(result.result, "results", None) or []:
        node = node_result.node
        status = str(getattr(node_result.status, "value", node_result.status))
        counts[f"{node.resource_type} {status}"] += 1
        if status in ("error", "fail"):
            failures.append(f"{node.unique_id}: {node_result.message}")
    return {
        "success": bool(result.success),
        "counts": dict(counts),
        "failures": failures,
        "exception": None,
        "build_id": build_id,
    }


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]), json.loads(sys.argv[2]) if len(sys.argv) > 2 else None)
