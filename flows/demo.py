"""The demo: a fresh sample export, one pipeline run, and a report of what happened.

    python -m flows.demo [--warehouse warehouse.duckdb] [--events 20000] [--users 1000]

Writes a sample CleverTap export to demo/export, runs the clevertap-engage-pipeline flow once
(load the due exports of ctsync.yml, dbt build, sync to the JSON-lines destination
demo/identify.jsonl), then prints what this run loaded, the tables, which audiences changed and
what was sent.
It starts from scratch each time: it replaces the warehouse file only if an earlier demo made it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ctsync.exports.sample import write_sample_export

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
MARKER = "ctsync_demo"


def prepare_warehouse(path: Path) -> None:
    """Remove a warehouse an earlier demo made; refuse to touch any other."""
    if not path.exists():
        return
    con = duckdb.connect(str(path), read_only=True)
    try:
        made_by_demo = bool(
            con.execute(
                "select count(*) from information_schema.tables where table_schema = 'ctsync' and table_name = ?",
                [MARKER],
            ).fetchall()[0][0]
        )
    finally:
        con.close()
    if not made_by_demo:
        raise SystemExit(
            f"{path} exists and was not made by the demo; move it away or run with --warehouse other.duckdb"
        )
    path.unlink()
    Path(str(path) + ".wal").unlink(missing_ok=True)


def mark_warehouse(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("create schema if not exists ctsync")
        con.execute(f"create table if not exists ctsync.{MARKER} as select now() as created_at")
    finally:
        con.close()


def report(path: Path, results: dict[str, dict[str, int]], identify_file: Path, seconds: float) -> None:
    con = duckdb.connect(str(path), read_only=True)
    try:
        load = results["load"]
        print("\n== What this run loaded")
        print(
            f"  {load['files']:,} new files, {load['new rows']:,} new rows, {load['rejected']:,} rejected lines"
            + ("" if load["files"] else " (no new export files: nothing to load)")
        )
        print("\n== The warehouse now (rows per table, all runs)")
        for table, rows in con.execute(
            "select table_name, estimated_size from duckdb_tables() where schema_name = 'clevertap_prod' "
            "and not starts_with(table_name, '_') order by table_name"
        ).fetchall():
            print(f"  clevertap_prod.{table:<28} {rows:>8,} rows")
        print("\n== Audiences (engage.engage_audience_memberships)")
        for key, name, members in con.execute(
            "select audiences.audience_key, audiences.audience_name, count(memberships.audience_key) "
            "from engage.engage_audiences as audiences "
            "left join engage.engage_audience_memberships as memberships using (audience_key) "
            "group by all order by 1"
        ).fetchall():
            print(f"  {key:<36} {members:>6,} members   ({name})")
        print("\n== Computed traits (engage.engage_computed_traits)")
        for key, users in con.execute(
            "select trait_key, count(*) from engage.engage_computed_traits group by 1 order by 1"
        ).fetchall():
            print(f"  {key:<36} {users:>6,} users")
    finally:
        con.close()
    sync = results["sync"]
    print("\n== What was sent (Identify calls to the JSON-lines destination)")
    print(
        f"  entered {sync['entered']:,}, exited {sync['exited']:,}, traits changed {sync['traits changed']:,}; "
        f"sent {sync['sent']:,}, rejected {sync['rejected']:,}"
    )
    if identify_file.exists():
        lines = identify_file.read_text(encoding="utf-8").splitlines()
        print(f"  {len(lines):,} Identify calls in {identify_file.relative_to(ROOT)}; the first one:")
        if lines:
            print("  " + json.dumps(json.loads(lines[0]))[:400])
            someone = json.loads(lines[0]).get("userId") or json.loads(lines[0]).get("anonymousId")
            print(f"\nWhy is someone in or out? .venv/bin/ctsync explain {someone} --warehouse {path}")
    print(f"\nDone in {seconds:.0f} s. Run it again to see an unchanged rerun send nothing: make demo-rerun")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # the report below says what happened
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    parser = argparse.ArgumentParser(prog="python -m flows.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", default=str(ROOT / "warehouse.duckdb"))
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--rerun", action="store_true", help="run the pipeline again on the same warehouse")
    args = parser.parse_args(argv)
    warehouse = Path(args.warehouse).resolve()
    started = time.perf_counter()
    if not args.rerun:
        prepare_warehouse(warehouse)
        shutil.rmtree(DEMO, ignore_errors=True)
        summary = write_sample_export(
            DEMO / "export", events=args.events, users=args.users, timezone="Asia/Kolkata", seed=7
        )
        print(f"wrote a sample export: {summary.events:,} events, {summary.users:,} users, {len(summary.files)} files")
        mark_warehouse(warehouse)
    from flows.local_api import prefect_api
    from flows.pipeline import clevertap_engage_pipeline

    with prefect_api():
        results = clevertap_engage_pipeline(
            destination="jsonl",
            as_of=datetime.now(UTC),
            warehouse=str(warehouse),
            config=str(ROOT / "ctsync.yml"),
        )
    report(warehouse, results, DEMO / "identify.jsonl", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    status = main()
    # Once a Prefect flow has run in a process, DuckDB's binding prints a (harmless) leak report at
    # interpreter teardown for objects Prefect's run machinery still holds; the report above is the output.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
