"""``ctsync report``: the page shows audience and trait sizes over builds and each sync run's counts,
read from a warehouse that real builds and syncs wrote; opened in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctsync.cli import app
from ctsync.exports.sample import write_sample_export
from ctsync.report import PALETTE, ReportData, SizePoint, SyncRun, render_report
from ctsync.warehouse.loader import LoadOptions, load_export_files
from tests.models.conftest import AS_OF, TIMEZONE, run_dbt

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@dataclass
class Synced:
    warehouse: Path
    report: Path
    audiences: int
    traits: int


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Synced:
    """Two builds a week apart, a sync after each, and the report of it all."""
    root = tmp_path_factory.mktemp("report")
    export = root / "export"
    write_sample_export(export, events=3000, users=300, seed=8, end=AS_OF, timezone=TIMEZONE)
    warehouse = root / "warehouse.duckdb"
    load_export_files(
        [str(export)], LoadOptions(nickname="CleverTap_Prod", timezone=TIMEZONE), warehouse=str(warehouse)
    )
    environment = {"CTSYNC_WAREHOUSE": str(warehouse), "CTSYNC_JSONL_PATH": str(root / "identify.jsonl")}
    for as_of in (AS_OF - timedelta(days=7), AS_OF):
        built = run_dbt(["build"], warehouse=warehouse, work=root, as_of=as_of)
        assert built.success, built.failures()
        sync = CliRunner().invoke(app, ["sync", "--destination", "jsonl", "--allow-mass-change"], env=environment)
        assert sync.exit_code == 0, sync.output
    report = root / "report.html"
    result = CliRunner().invoke(app, ["report", "--output", str(report)], env=environment)
    assert result.exit_code == 0, result.output
    assert "2 build(s), 2 sync run(s)" in result.stdout
    audiences = len(list((Path(__file__).parents[1] / "models" / "audiences").glob("*.sql")))
    traits = len(list((Path(__file__).parents[1] / "models" / "traits").glob("*.sql")))
    return Synced(warehouse, report, audiences, traits)


def test_the_page_has_a_line_per_audience_and_trait_and_every_run(synced: Synced) -> None:
    page = synced.report.read_text()
    audience_chart = page.split('id="audience-chart"')[1].split("</svg>")[0]
    trait_chart = page.split('id="trait-chart"')[1].split("</svg>")[0]
    assert audience_chart.count('class="series"') == synced.audiences
    assert trait_chart.count('class="series"') == synced.traits
    # every series has a point per build
    assert all(points.count(",") == 2 for points in re.findall(r'points="([^"]*)"', audience_chart))
    runs = page.split('id="sync-runs"')[1]
    assert runs.count('<div class="run">') == 2
    assert runs.count("audience order_completed_last_30days") >= 1


def test_json_lists_what_the_page_shows(synced: Synced, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["report", "--output", str(tmp_path / "r.html"), "--json", "--warehouse", str(synced.warehouse)]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert len({point["built_at"] for point in document["sizes"]}) == 2
    assert [run["status"] for run in document["runs"]] == ["succeeded", "succeeded"]
    first_run = document["runs"][-1]
    assert sum(counts["entered"] for counts in first_run["computations"]) == first_run["entered"] > 0


def test_user_text_is_escaped() -> None:
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    data = ReportData(
        warehouse="<script>alert(1)</script>.duckdb",
        generated_at=moment,
        sizes=[SizePoint(moment, "audience", "vip", 3)],
        runs=[SyncRun("r1", "dest<b>", moment, "failed", False, 1, 0, 0, 0, 0, 1, "HTTP 500 <html>")],
    )
    page = render_report(data)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "dest&lt;b&gt;" in page and "HTTP 500 &lt;html&gt;" in page


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_the_page_renders_in_a_browser(synced: Synced, tmp_path: Path) -> None:
    assert CHROMIUM is not None
    screenshot = tmp_path / "report.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,1000"]
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={screenshot}", synced.report.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    width, height, pixels = read_png(screenshot)
    assert (width, height) == (1200, 1000)
    colours = {pixel for pixel in pixels}
    drawn = [colour for colour in PALETTE[: synced.audiences] if _rgb(colour) in colours]
    assert len(drawn) == synced.audiences, "each audience's line is drawn in its colour"
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", synced.report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert dom.count("<polyline") == synced.audiences + synced.traits


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def read_png(path: Path) -> tuple[int, int, list[tuple[int, int, int]]]:
    """(width, height, RGB pixels) of an 8-bit RGB or RGBA PNG, such as Chromium's screenshots."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks, header = 8, [], b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour_type in (2, 6)
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - corner
                a, b, c = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                line[i] = (line[i] + (left if a <= b and a <= c else up if b <= c else corner)) & 0xFF
        pixels.extend(tuple(line[i : i + 3]) for i in range(0, stride, channels))  # type: ignore[misc]
        previous = line
    return width, height, pixels
