"""The loader's memory bounds: DuckDB's limit follows its thread count, and batches stay small."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from ctsync.exports.content import FileKind
from ctsync.exports.files import ExportFile
from ctsync.warehouse.connection import MEMORY_BASE_MB, MEMORY_PER_THREAD_MB, configure_session
from ctsync.warehouse.loader import DEFAULT_BATCH_BYTES, _batches


@pytest.mark.parametrize("threads", [1, 2, 6])
def test_the_memory_limit_grows_with_duckdbs_threads(threads: int) -> None:
    con = duckdb.connect()
    con.execute(f"set threads = {threads}")
    configure_session(con)
    expected = duckdb.connect()
    expected.execute(f"set memory_limit = '{MEMORY_BASE_MB + MEMORY_PER_THREAD_MB * threads}MB'")
    setting = "select current_setting('memory_limit')"
    assert con.execute(setting).fetchall() == expected.execute(setting).fetchall()


def _file(event: str, day: str, index: int, megabytes: int) -> ExportFile:
    return ExportFile(
        url=f"/exports/1700000000-1793491200-{event}-{day}-{index}-3.json.gz",
        size=megabytes * 1024 * 1024 // 8,  # gzip counts ~8x its size
        kind=FileKind.EVENTS,
        request_id="1700000000",
        run_ts="1793491200",
        event_name_hint=event,
        day=day,
        file_index=index,
        db_id="3",
    )


def test_a_large_event_is_split_into_batches_of_at_most_the_batch_size_at_series_boundaries() -> None:
    # One event, 20 days of 40 MB each (800 MB): batches end between series, never above the limit.
    files = [_file("App-Launched", f"202610{day:02d}", 0, 40) for day in range(1, 21)]
    batches = _batches(files, DEFAULT_BATCH_BYTES)
    sizes = [sum(f.size * 8 for f in batch) for batch in batches]
    assert len(batches) > 1 and max(sizes) <= DEFAULT_BATCH_BYTES
    assert sorted(f.url for batch in batches for f in batch) == sorted(f.url for f in files)


def test_a_batch_past_the_event_threshold_ends_where_the_next_event_begins() -> None:
    megabytes = DEFAULT_BATCH_BYTES // 2 // (1024 * 1024)
    files = [_file("Charged", "20261001", 0, megabytes), _file("Product-Viewed", "20261001", 0, 8)]
    assert [[f.event_name_hint for f in batch] for batch in _batches(files, DEFAULT_BATCH_BYTES)] == [
        ["Charged"],
        ["Product-Viewed"],
    ]


def test_batch_mb_sets_the_batch_size_of_ctsync_load(tmp_path: Path) -> None:
    """`--batch-mb` (CTSYNC_BATCH_MB) reaches the loader: one batch per 16 MB of JSON here."""
    from typer.testing import CliRunner

    import ctsync.warehouse.loader as loader
    from ctsync.cli import app
    from ctsync.exports.sample import write_sample_export

    write_sample_export(tmp_path / "export", events=20_000, users=500, seed=7, profiles=False)
    sizes: list[int] = []
    original = loader._batches

    def recorded(files: list[ExportFile], batch_bytes: int) -> list[list[ExportFile]]:
        sizes.append(batch_bytes)
        return original(files, batch_bytes)

    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loader, "_batches", recorded)
        result = runner.invoke(
            app,
            ["load", str(tmp_path / "export"), "--nickname", "Demo", "--warehouse", str(tmp_path / "w.duckdb")],
            env={"CTSYNC_BATCH_MB": "16"},
        )
        assert result.exit_code == 0, result.output
        result = runner.invoke(
            app,
            [
                "load",
                str(tmp_path / "export"),
                "--nickname",
                "Demo",
                "--warehouse",
                str(tmp_path / "w.duckdb"),
                "--batch-mb",
                "8",
            ],
        )
    assert sizes == [16 * 1024 * 1024]
    assert result.exit_code != 0 and "--batch-mb" in result.output and "16" in result.output
