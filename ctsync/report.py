"""``ctsync report``: one static HTML page to look at: audience and trait sizes over time (from the
history every build appends) and each sync run's counts per audience and trait.

The page is self-contained (inline SVG, no script, no network), so it opens from a file, an
e-mail attachment or a Prefect artifact link alike. Everything it shows comes from the
warehouse: ``engage.audience_size_history``, ``ctsync.sync_runs`` and
``ctsync.sync_run_computations``.
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ctsync.build import SIZE_HISTORY
from ctsync.sources import reading
from ctsync.warehouse.connection import parse_warehouse
from ctsync.warehouse.targets import Target

STATE_SCHEMA = "ctsync"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


@dataclass(frozen=True)
class SizePoint:
    built_at: datetime
    computation_class: str
    computation_key: str
    size: int


@dataclass(frozen=True)
class RunCounts:
    computation_class: str
    computation_key: str
    entered: int
    exited: int
    changed: int
    sent: int
    rejected: int
    pending: int


@dataclass
class SyncRun:
    run_id: str
    destination: str
    started_at: datetime
    status: str
    dry_run: bool
    entered: int
    exited: int
    traits_changed: int
    sent: int
    rejected: int
    pending: int
    error: str | None
    computations: list[RunCounts] = field(default_factory=list)


@dataclass
class ReportData:
    warehouse: str
    generated_at: datetime
    sizes: list[SizePoint]
    runs: list[SyncRun]

    def series(self, computation_class: str) -> dict[str, list[tuple[datetime, int]]]:
        """Size over time by key, oldest first."""
        found: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
        for point in sorted(self.sizes, key=lambda p: p.built_at):
            if point.computation_class == computation_class:
                found[point.computation_key].append((point.built_at, point.size))
        return dict(sorted(found.items()))


def read_report_data(warehouse: str, *, runs: int = 20) -> ReportData:
    """Sizes of every build and the newest ``runs`` sync runs (with their counts) from the warehouse."""
    where = parse_warehouse(warehouse)
    with reading(where) as reader:
        tables = _tables(reader)
        sizes = _sizes(reader) if ("engage", "audience_size_history") in tables else []
        found = _runs(reader, runs) if (STATE_SCHEMA, "sync_runs") in tables else []
        if found and (STATE_SCHEMA, "sync_run_computations") in tables:
            _add_computations(reader, found)
    return ReportData(warehouse=where.describe(), generated_at=datetime.now(UTC), sizes=sizes, runs=found)


def _tables(reader: Target) -> set[tuple[str, str]]:
    rows = reader.execute(
        "select table_schema, table_name from information_schema.tables where table_schema in (?, ?)",
        ["engage", STATE_SCHEMA],
    )
    return {(str(schema), str(name)) for schema, name in rows}


def _sizes(reader: Target) -> list[SizePoint]:
    rows = reader.execute(
        f"select built_at, computation_class, computation_key, size from {SIZE_HISTORY} order by built_at, 3"
    )
    return [SizePoint(_utc(built_at), str(kind), str(key), int(size)) for built_at, kind, key, size in rows]


def _runs(reader: Target, limit: int) -> list[SyncRun]:
    rows = reader.execute(
        "select run_id, destination, started_at, status, dry_run, entered, exited, traits_changed, sent, "
        f"rejected, pending, error from {STATE_SCHEMA}.sync_runs order by started_at desc limit {int(limit)}"
    )
    return [
        SyncRun(
            run_id=str(row[0]),
            destination=str(row[1]),
            started_at=_utc(row[2]),
            status=str(row[3]),
            dry_run=bool(row[4]),
            entered=int(row[5] or 0),
            exited=int(row[6] or 0),
            traits_changed=int(row[7] or 0),
            sent=int(row[8] or 0),
            rejected=int(row[9] or 0),
            pending=int(row[10] or 0),
            error=row[11],
        )
        for row in rows
    ]


def _add_computations(reader: Target, runs: list[SyncRun]) -> None:
    by_id = {run.run_id: run for run in runs}
    marks = ", ".join("?" for _ in by_id)
    rows = reader.execute(
        "select run_id, computation_class, computation_key, entered, exited, changed, sent, rejected, pending "
        f"from {STATE_SCHEMA}.sync_run_computations where run_id in ({marks}) order by 2, 3",
        list(by_id),
    )
    for run_id, *values in rows:
        kind, key, *counts = values
        by_id[str(run_id)].computations.append(RunCounts(str(kind), str(key), *(int(n or 0) for n in counts)))


def _utc(moment: Any) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    assert isinstance(moment, datetime)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- the page --------------------------------------------------------------------------------

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1d1d1f; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
.meta, .empty { color: #666; } table { border-collapse: collapse; margin: .6rem 0 1.2rem; }
th, td { padding: .25rem .7rem; text-align: right; border-bottom: 1px solid #eee; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; } th { background: #f6f6f6; }
.succeeded { color: #1a7f37; } .failed, .refused, .incomplete, .interrupted { color: #cf222e; }
.legend span { display: inline-block; margin-right: 1rem; } .swatch { display: inline-block; width: .8rem;
       height: .8rem; margin-right: .3rem; vertical-align: middle; }
svg { max-width: 100%; height: auto; } .run { margin-bottom: 1.5rem; }
"""


def render_report(data: ReportData) -> str:
    """The whole page as HTML text; every value from the warehouse is escaped."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>ctsync report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>ctsync report</h1>",
        f'<p class="meta">warehouse {_e(data.warehouse)} &middot; generated {data.generated_at:%Y-%m-%d %H:%M} UTC '
        f"&middot; {len({p.built_at for p in data.sizes})} build(s), {len(data.runs)} sync run(s)</p>",
    ]
    for kind, title, unit in (
        ("audience", "Audience sizes over time", "members"),
        ("trait", "Computed traits over time", "people with a value"),
    ):
        parts.append(f'<h2 id="{kind}-sizes">{title}</h2>')
        series = data.series(kind)
        if not series:
            parts.append(
                f'<p class="empty">No {kind} sizes yet: every successful <code>ctsync build</code> adds them.</p>'
            )
            continue
        parts.append(_chart(series, unit, kind))
        parts.append(_latest_table(series, unit))
    parts.append('<h2 id="sync-runs">Sync runs</h2>')
    if not data.runs:
        parts.append('<p class="empty">No sync runs yet: <code>ctsync sync --destination NAME</code> records them.</p>')
    for run in data.runs:
        parts.append(_run_section(run))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(warehouse: str, output: Path, *, runs: int = 20) -> ReportData:
    data = read_report_data(warehouse, runs=runs)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_report(data), encoding="utf-8")
    return data


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _chart(series: dict[str, list[tuple[datetime, int]]], unit: str, kind: str) -> str:
    width, height, left, right, top, bottom = 900, 320, 64, 16, 16, 48
    moments = sorted({moment for points in series.values() for moment, _ in points})
    largest = max((size for points in series.values() for _, size in points), default=0) or 1
    span = (moments[-1] - moments[0]).total_seconds() or 1.0

    def x(moment: datetime) -> float:
        if len(moments) == 1:
            return left + (width - left - right) / 2
        return left + (moment - moments[0]).total_seconds() / span * (width - left - right)

    def y(size: int) -> float:
        return top + (1 - size / largest) * (height - top - bottom)

    shapes = [
        f'<svg role="img" aria-label="{_e(kind)} sizes over time" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" id="{_e(kind)}-chart">',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#999"/>',
    ]
    for fraction in (0, 0.5, 1):
        value = round(largest * fraction)
        shapes.append(
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="11" fill="#555">{value:,}</text>'
        )
    labels = [(moments[0], "start" if len(moments) > 1 else "middle")]
    if len(moments) > 1:
        labels.append((moments[-1], "end"))
    for moment, anchor in labels:
        shapes.append(
            f'<text x="{x(moment):.1f}" y="{height - bottom + 18}" text-anchor="{anchor}" font-size="11" '
            f'fill="#555">{moment:%Y-%m-%d %H:%M}</text>'
        )
    shapes.append(f'<text x="{left}" y="{height - 6}" font-size="11" fill="#555">{_e(unit)} at each build (UTC)</text>')
    legend = []
    for index, (key, points) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        coordinates = " ".join(f"{x(moment):.1f},{y(size):.1f}" for moment, size in points)
        shapes.append(
            f'<polyline class="series" data-key="{_e(key)}" fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{coordinates}"><title>{_e(key)}</title></polyline>'
        )
        for moment, size in points:
            shapes.append(
                f'<circle cx="{x(moment):.1f}" cy="{y(size):.1f}" r="3" fill="{colour}">'
                f"<title>{_e(key)}: {size:,} ({moment:%Y-%m-%d %H:%M})</title></circle>"
            )
        legend.append(f'<span><i class="swatch" style="background:{colour}"></i>{_e(key)}</span>')
    shapes.append("</svg>")
    return "\n".join(shapes) + f'\n<p class="legend">{"".join(legend)}</p>'


def _latest_table(series: dict[str, list[tuple[datetime, int]]], unit: str) -> str:
    rows = [f"<table><tr><th>key</th><th>{_e(unit)} now</th><th>previous build</th><th>change</th><th>builds</th></tr>"]
    for key, points in series.items():
        now = points[-1][1]
        before = points[-2][1] if len(points) > 1 else None
        change = "" if before is None else f"{now - before:+,}"
        rows.append(
            f"<tr><td>{_e(key)}</td><td>{now:,}</td><td>{'' if before is None else f'{before:,}'}</td>"
            f"<td>{change}</td><td>{len(points)}</td></tr>"
        )
    return "\n".join([*rows, "</table>"])


def _run_section(run: SyncRun) -> str:
    status = "dry run" if run.dry_run else run.status
    head = (
        f'<div class="run"><h3>{run.started_at:%Y-%m-%d %H:%M} UTC &middot; {_e(run.destination)} &middot; '
        f'<span class="{_e(run.status)}">{_e(status)}</span></h3>'
        f'<p class="meta">run {_e(run.run_id)}: {run.entered:,} entered, {run.exited:,} exited, '
        f"{run.traits_changed:,} traits changed, {run.sent:,} sent, {run.rejected:,} rejected, "
        f"{run.pending:,} pending</p>"
    )
    if run.error:
        head += f'<p class="meta">{_e(run.error)}</p>'
    if not run.computations:
        return head + '<p class="empty">Nothing changed in this run.</p></div>'
    rows = [
        "<table><tr><th>audience / trait</th><th>entered</th><th>exited</th><th>changed</th><th>sent</th>"
        "<th>rejected</th><th>pending</th></tr>"
    ]
    for counts in run.computations:
        rows.append(
            f"<tr><td>{_e(counts.computation_class)} {_e(counts.computation_key)}</td><td>{counts.entered:,}</td>"
            f"<td>{counts.exited:,}</td><td>{counts.changed:,}</td><td>{counts.sent:,}</td>"
            f"<td>{counts.rejected:,}</td><td>{counts.pending:,}</td></tr>"
        )
    return head + "\n".join([*rows, "</table></div>"])
