"""Load benchmark: ctsync's loader against a bare DuckDB read_json of the same files.

    python benchmarks/load.py --events 1000000 [--repeat 3] [--postgres postgresql://user@host/db]

Generates the export once (cached under benchmarks/data/), then alternates, ``--repeat`` times:
a bare ``create table t as select * from read_json(files, format='newline_delimited')`` into a
fresh DuckDB file, and ``load_export_files`` into a fresh DuckDB file, and (with ``--postgres``,
or CTSYNC_TEST_POSTGRES_URL) into a fresh PostgreSQL database on that server. Each measurement
runs in its own process, so its peak RSS is its own. Prints medians and the ratio of the medians.
Targets on a 2-core machine: >= 130k events/s at 1M events, <= 2.5x the read that keeps every key
(``--lossless-baseline``) at 1M, peak RSS <= 600 MiB at 1M events and <= 1 GiB at 10M. It prints the
CPU seconds per million events and the peak RSS of each.

It also prints how many non-null values each one keeps per event. The bare read takes its schema from
the first file's first 20,480 rows, so it drops every key that sample lacks (other events' properties,
``sessionProps``); ctsync keeps every key and adds Segment's standard columns, so it writes about twice
as many values. A third run, ``--lossless-baseline``, times read_json keeping every key (the nested
objects as JSON text) for a like-for-like reference. ``--floors`` times, each on its own, the costs no
loader of this layout avoids: parsing the files, writing ctsync's finished tables from memory, and the
two together as one pass (each event's records parsed once straight into typed columns of every leaf
and written: the flattening included, but no id, verdict, dedup or column discovery).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
END = datetime(2026, 11, 1, tzinfo=UTC)


def _shard(args: tuple[str, int, int, int]) -> int:
    from ctsync.exports.sample import write_sample_export

    folder, events, users, index = args
    summary = write_sample_export(
        folder,
        events=events,
        users=users,
        seed=1000 + index,
        end=END,
        timezone="Asia/Kolkata",
        profiles=False,
        request_id=f"17{index:08d}",
        max_records_per_file=200_000,
    )
    return summary.events


def ensure_export(events: int) -> Path:
    """The benchmark export for ``events`` events, written once (in parallel shards) and reused."""
    folder = DATA / f"events-{events}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shards = max(1, min(os.cpu_count() or 1, 8, events // 250_000 or 1))
    per_shard = events // shards
    jobs = [
        (str(folder), per_shard + (events - per_shard * shards if i == 0 else 0), max(1000, per_shard // 20), i)
        for i in range(shards)
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(shards) as pool:
        written = sum(pool.map(_shard, jobs))
    marker.write_text(str(written))
    print(f"generated {written:,} events in {time.perf_counter() - started:.0f} s into {folder}", file=sys.stderr)
    return folder


def uncompressed_bytes(folder: Path) -> int:
    """Sum of the gzip ISIZE trailers (size mod 2^32 of each member; files here are far smaller)."""
    total = 0
    for path in folder.glob("*.json.gz"):
        with path.open("rb") as handle:
            handle.seek(-4, os.SEEK_END)
            total += struct.unpack("<I", handle.read(4))[0]
    return total


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _leaf_counts(expression: str, type_: Any) -> list[str]:
    """``count(leaf)`` for each leaf of a column (STRUCT fields are leaves of their own)."""
    if getattr(type_, "id", "") == "struct":
        return [
            count for name, child in type_.children for count in _leaf_counts(f"{expression}.{_quote(name)}", child)
        ]
    return [f"count({expression})"]


def values_kept(con: Any, tables: list[str]) -> int:
    """Non-null values stored in ``tables``, counting each leaf of a STRUCT column separately."""
    total = 0
    for table in tables:
        relation = con.table(table)
        counts = [
            count
            for name, type_ in zip(relation.columns, relation.types, strict=True)
            for count in _leaf_counts(_quote(name), type_)
        ]
        total += con.execute(f"select {' + '.join(counts)} from {table}").fetchall()[0][0]
    return total


def _staging_columns() -> str:
    """The loader's own read_json columns: nested objects kept whole as JSON text."""
    from ctsync.exports.records import TOP_LEVEL_COLUMNS

    return "{" + ", ".join(f"'{name}': '{type_}'" for name, type_ in TOP_LEVEL_COLUMNS.items()) + "}"


def parse_floor(folder: str) -> int:
    """Only the parse: read_json of the loader's columns, every value touched, nothing stored."""
    import duckdb

    from ctsync.exports.records import TOP_LEVEL_COLUMNS

    con = duckdb.connect()
    touched = ", ".join(f"sum(length(cast({_quote(name)} as varchar)))" for name in TOP_LEVEL_COLUMNS)
    row = con.execute(
        f"select count(*), {touched} from read_json('{folder}/*.json.gz', format = 'newline_delimited', "
        f"ignore_errors = true, columns = {_staging_columns()})"
    ).fetchall()[0]
    return int(row[0])


def flatten_floor(folder: str, warehouse: str) -> tuple[int, float]:
    """One parse of every record straight into typed columns, written: per event (its own files, as the
    loader reads them), ``read_json_objects`` -> ``json_transform`` into the structure of every leaf ->
    unnested into a table of a fresh DuckDB file, in one transaction (commit and checkpoint included). No
    id, verdict, dedup or column discovery: the structure comes from a sample of each event's records,
    read before the clock starts. Returns the rows written and the seconds."""
    import duckdb

    from ctsync.exports.files import discover_files

    by_event: dict[str, list[str]] = {}
    for export_file in discover_files([folder]):
        if export_file.event_name_hint is None:  # the marker file
            continue
        by_event.setdefault(export_file.event_name_hint or "", []).append(export_file.url)
    con = duckdb.connect(warehouse)
    read = "read_json_objects(?, format = 'newline_delimited', ignore_errors = true)"
    objects = f"select json from {read} where starts_with(json, '{{') limit 20000"
    sample = f"select json_group_structure(json) from ({objects})"
    structures = {event: con.execute(sample, [paths]).fetchone()[0] for event, paths in by_event.items()}
    started = time.perf_counter()
    con.begin()
    rows = 0
    for index, (event, paths) in enumerate(sorted(by_event.items())):
        if structures[event] is None:
            raise SystemExit(f"no JSON object among the first records of {event!r}")
        spec = str(structures[event]).replace("'", "''")
        rows += con.execute(
            f"create table t{index} as select unnest(json_transform(json, '{spec}'), recursive := true) from {read} "
            "where starts_with(json, '{')",
            [paths],
        ).fetchall()[0][0]
    con.commit()
    con.execute("checkpoint")
    con.close()
    return rows, time.perf_counter() - started


def write_floor(source: str, warehouse: str) -> tuple[int, float]:
    """Only the write: ctsync's finished event tables (``source``), first copied into memory, written into
    a fresh DuckDB file the way the loader writes (one transaction; commit and checkpoint included).
    Returns the rows written and the seconds, timed from after the copy into memory."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"attach '{source}' as source (read_only)")
    tables = [
        str(row[0])
        for row in con.execute(
            "select table_name from duckdb_tables() where database_name = 'source' "
            "and schema_name = 'clevertap_prod' and table_name not in ('_loads', '_rejected')"
        ).fetchall()
    ]
    for index, table in enumerate(tables):
        con.execute(f"create temp table t{index} as select * from source.clevertap_prod.{_quote(table)}")
    con.execute("detach source")
    started = time.perf_counter()
    con.execute(f"attach '{warehouse}' as target")
    con.execute("create schema target.clevertap_prod")
    con.begin()
    rows = 0
    for index, table in enumerate(tables):
        name = f"target.clevertap_prod.{_quote(table)}"
        con.execute(f"create table {name} as select * from t{index} where false")
        rows += con.execute(f"insert into {name} select * from t{index}").fetchall()[0][0]
    con.commit()
    con.execute("checkpoint target")
    return rows, time.perf_counter() - started


def worker(kind: str, folder: str, warehouse: str) -> None:
    """One measurement, in its own process; prints JSON with seconds, rows and peak RSS."""
    started = time.perf_counter()
    write_seconds = None
    if kind == "parse":
        rows = parse_floor(folder)
    elif kind == "write":
        rows, write_seconds = write_floor(folder, warehouse)
    elif kind == "flatten":
        rows, write_seconds = flatten_floor(folder, warehouse)
    elif kind in ("bare", "lossless"):
        import duckdb

        columns = f", columns = {_staging_columns()}" if kind == "lossless" else ""
        con = duckdb.connect(warehouse)
        con.execute(
            f"create table t as select * from read_json('{folder}/*.json.gz', format = 'newline_delimited', "
            f"ignore_errors = true{columns})"
        )
        rows = con.execute("select count(*) from t").fetchall()[0][0]
        con.close()
    else:  # ctsync into a DuckDB file, or into PostgreSQL
        from ctsync.warehouse.loader import LoadOptions, load_export_files

        summary = load_export_files(
            [folder], LoadOptions(nickname="CleverTap_Prod", timezone="Asia/Kolkata"), warehouse=warehouse
        )
        if summary.failed:
            raise SystemExit(f"load failed: {summary.failed[0].error}")
        rows = summary.total("rows_inserted")
    seconds = time.perf_counter() - started if write_seconds is None else write_seconds
    usage = resource.getrusage(resource.RUSAGE_SELF)
    values = None
    if kind in ("bare", "ctsync"):
        import duckdb

        con = duckdb.connect(warehouse, read_only=True)
        if kind == "bare":
            tables = ["t"]
        else:
            tables = [
                f"clevertap_prod.{_quote(str(row[0]))}"
                for row in con.execute(
                    "select table_name from duckdb_tables() where schema_name = 'clevertap_prod' "
                    "and table_name not in ('_loads', '_rejected')"
                ).fetchall()
            ]
        values = values_kept(con, tables)
        con.close()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "rows": rows,
                "peak_rss_mib": usage.ru_maxrss / 1024,
                "values": values,
            }
        )
    )


def measure(kind: str, folder: Path, postgres: str | None = None, *, floors: bool = False) -> dict[str, float]:
    """One measurement in a fresh warehouse. ``floors`` (ctsync only): also time writing ctsync's finished
    tables from memory into a fresh file (``write_seconds``)."""
    if kind == "postgres":
        assert postgres is not None
        return _measure_postgres(folder, postgres)
    workdir = tempfile.mkdtemp(prefix="ctsync-bench-")
    try:
        result = _run_worker(kind, folder, os.path.join(workdir, "bench.duckdb"))
        if floors:
            written = _run_worker("write", Path(workdir) / "bench.duckdb", os.path.join(workdir, "copy.duckdb"))
            result["write_seconds"] = written["seconds"]
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_worker(kind: str, folder: Path, warehouse: str) -> dict[str, float]:
    """``worker`` in a process of its own (so its peak RSS is its own); its JSON result."""
    output = subprocess.run(
        [sys.executable, __file__, "--worker", kind, str(folder), warehouse],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def _measure_postgres(folder: Path, server: str) -> dict[str, float]:
    """One load into a fresh database on ``server``, dropped afterwards."""
    import uuid

    import psycopg2
    from sqlalchemy.engine import make_url

    name = f"ctsync_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'create database "{name}"')
    try:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        return _run_worker("postgres", folder, url)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("CTSYNC_TEST_POSTGRES_URL"),
        help="a PostgreSQL server to also load into (default: CTSYNC_TEST_POSTGRES_URL)",
    )
    parser.add_argument(
        "--lossless-baseline",
        action="store_true",
        help="also time read_json keeping every key (nested objects as JSON text)",
    )
    parser.add_argument(
        "--floors",
        action="store_true",
        help="also time the costs no loader of this layout avoids: parsing the files, writing ctsync's tables, "
        "and one parse of every record into typed columns, written",
    )
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "FOLDER", "WAREHOUSE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.worker:
        worker(*args.worker)
        return
    folder = ensure_export(args.events)
    events = int((folder / ".complete").read_text())
    compressed = sum(path.stat().st_size for path in folder.glob("*.json.gz"))
    raw = uncompressed_bytes(folder)
    files = len(list(folder.glob("*.json.gz")))
    print(f"input: {events:,} events in {files} files, {compressed / 1e6:.0f} MB gzip, {raw / 1e6:.0f} MB JSON")
    bare, ours, pg, lossless, parse, flatten = [], [], [], [], [], []
    for run in range(args.repeat):
        if args.lossless_baseline:
            lossless.append(measure("lossless", folder))
            print(f"run {run + 1}: read_json keeping every key {lossless[-1]['seconds']:.2f} s")
        bare.append(measure("bare", folder))
        ours.append(measure("ctsync", folder, floors=args.floors))
        if args.floors:
            parse.append(measure("parse", folder))
            flatten.append(measure("flatten", folder))
            print(
                f"run {run + 1}: parse only {parse[-1]['seconds']:.2f} s | "
                f"writing ctsync's tables from memory {ours[-1]['write_seconds']:.2f} s | "
                f"one parse into typed columns, written {flatten[-1]['seconds']:.2f} s "
                f"({flatten[-1]['cpu_seconds']:.1f} CPU s, peak RSS {flatten[-1]['peak_rss_mib']:.0f} MiB)"
            )
        print(
            f"run {run + 1}: bare read_json {bare[-1]['seconds']:.2f} s ({bare[-1]['cpu_seconds']:.1f} CPU s) | "
            f"ctsync load {ours[-1]['seconds']:.2f} s ({ours[-1]['cpu_seconds']:.1f} CPU s, {ours[-1]['rows']:,} rows, "
            f"peak RSS {ours[-1]['peak_rss_mib']:.0f} MiB)"
        )
        if args.postgres:
            pg.append(measure("postgres", folder, args.postgres))
            print(f"run {run + 1}: ctsync load into PostgreSQL {pg[-1]['seconds']:.2f} s ({pg[-1]['rows']:,} rows)")
    bare_s = statistics.median(m["seconds"] for m in bare)
    ours_s = statistics.median(m["seconds"] for m in ours)
    rss = max(m["peak_rss_mib"] for m in ours)
    print()
    print(
        f"ctsync load      median {ours_s:.2f} s   {events / ours_s:,.0f} events/s   "
        f"{raw / 1e6 / ours_s:.0f} MB/s JSON ({compressed / 1e6 / ours_s:.1f} MB/s gzip)   peak RSS {rss:.0f} MiB"
    )
    print(f"bare read_json   median {bare_s:.2f} s   {events / bare_s:,.0f} events/s")
    if pg:
        pg_s = statistics.median(m["seconds"] for m in pg)
        print(
            f"ctsync load into PostgreSQL  median {pg_s:.2f} s   {events / pg_s:,.0f} events/s   "
            f"peak RSS {max(m['peak_rss_mib'] for m in pg):.0f} MiB (loader process)"
        )
    else:
        print("PostgreSQL: not measured (pass --postgres URL or set CTSYNC_TEST_POSTGRES_URL)")
    bare_cpu = statistics.median(m["cpu_seconds"] for m in bare)
    ours_cpu = statistics.median(m["cpu_seconds"] for m in ours)
    million = events / 1e6
    print(
        f"CPU seconds per million events: ctsync {ours_cpu / million:.2f}, bare read {bare_cpu / million:.2f}; "
        f"peak RSS: ctsync {rss:.0f} MiB, bare read {max(m['peak_rss_mib'] for m in bare):.0f} MiB"
    )
    print(f"ratio ctsync / bare: {ours_s / bare_s:.2f}x wall time, {ours_cpu / bare_cpu:.2f}x CPU time")
    bare_values, our_values = bare[-1]["values"], ours[-1]["values"]
    print(
        f"values kept per event: bare read {bare_values / events:.1f}, ctsync {our_values / events:.1f} "
        f"({our_values / bare_values:.2f}x); time per value kept: ctsync / bare "
        f"{(ours_s / our_values) / (bare_s / bare_values):.2f}x"
    )
    if lossless:
        lossless_s = statistics.median(m["seconds"] for m in lossless)
        lossless_cpu = statistics.median(m["cpu_seconds"] for m in lossless)
        print(
            f"read_json keeping every key  median {lossless_s:.2f} s ({lossless_cpu / million:.2f} CPU s per million "
            f"events, peak RSS {max(m['peak_rss_mib'] for m in lossless):.0f} MiB); ratio ctsync / it: "
            f"{ours_s / lossless_s:.2f}x wall time, {ours_cpu / lossless_cpu:.2f}x CPU time"
        )
    if parse:
        parse_s = statistics.median(m["seconds"] for m in parse)
        write_s = statistics.median(m["write_seconds"] for m in ours)
        print(
            f"floor: parse only {parse_s:.2f} s + writing ctsync's tables {write_s:.2f} s = {parse_s + write_s:.2f} s, "
            f"{(parse_s + write_s) / bare_s:.2f}x the bare read ({events / (parse_s + write_s):,.0f} events/s) "
            "before any id, validation, dedup or column discovery"
        )
        flatten_s = statistics.median(m["seconds"] for m in flatten)
        flatten_cpu = statistics.median(m["cpu_seconds"] for m in flatten)
        reference = f"{flatten_s / lossless_s:.2f}x the read keeping every key, " if lossless else ""
        print(
            f"floor of the layout: one parse of every record into typed columns, written, per event: "
            f"{flatten_s:.2f} s ({flatten_cpu / million:.2f} CPU s per million events, including the sample read), "
            f"{reference}{events / flatten_s:,.0f} events/s; ctsync / it: {ours_s / flatten_s:.2f}x wall time"
        )
    print()
    print(
        "targets: >= 130,000 events/s at 1M events; <= 2.5x the read_json keeping every key (--lossless-baseline) "
        "at 1M; peak RSS <= 600 MiB at 1M events and <= 1024 MiB at 10M"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT.parent))
    main()
