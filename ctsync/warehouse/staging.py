"""Reading a batch's files into DuckDB staging tables: whole files at once, line by line where needed.

DuckDB's JSON reader reads every file of a batch in one statement. When it cannot (a gzip stream
that breaks, a line longer than its buffer), each file is read on its own, and the files it still
cannot read are split into lines in Python (``ctsync.exports.content.split_lines``), so one bad
file or line never keeps the others of its batch out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from ctsync.exports.content import ExactLines


@dataclass
class StagedFile:
    """A file of the batch, as DuckDB reads it."""

    file_id: int
    local_path: str
    compressed: bool
    header: bool
    series: str = ""
    """See ``ExportFile.series``: identical events are numbered within a series."""
    sent_at: str | None = None
    """When CleverTap ran the export (ISO-8601, from the file name); None when the name does not say."""
    export_id: str | None = None
    """The export's request id, from the file name; None when the name does not say."""


def read_whole_files(files: Sequence[StagedFile], insert: Callable[[list[str], bool], None]) -> set[int]:
    """Run ``insert(paths, compressed)`` over every file, one statement per compression, else file by file.

    Returns the files DuckDB could not read even alone: they are to be read line by line. ``insert`` must
    run outside a transaction (a failed statement inside one would abort it) and insert nothing when it fails.
    """
    unreadable: set[int] = set()
    for compressed in (True, False):
        group = [f for f in files if f.compressed == compressed]
        if not group:
            continue
        try:
            insert([f.local_path for f in group], compressed)
        except duckdb.InterruptException:
            raise
        except duckdb.Error:
            for staged in group:
                try:
                    insert([staged.local_path], compressed)
                except duckdb.InterruptException:
                    raise
                except duckdb.Error:
                    unreadable.add(staged.file_id)
    return unreadable


LINES_CHUNK_BYTES = 8 * 1024 * 1024
"""Text of the lines one statement stages. DuckDB works on a vector of rows at a time, and its JSON
functions hold several copies of each value: big lines together in one vector would multiply that."""


def insert_lines(
    con: duckdb.DuckDBPyConnection, lines: ExactLines, statement: Callable[[str], str], params: list[object]
) -> None:
    """Run ``statement(view)`` once per chunk of ``lines``, each chunk visible as ``view`` (line_no, raw,
    problem) while it runs. A chunk holds at most ``LINES_CHUNK_BYTES`` of text, or one longer line."""
    for start, end in _chunks([len(raw) for raw in lines.raw]):
        table = pa.table(
            {
                "line_no": pa.array(lines.line_numbers[start:end], pa.int64()),
                "raw": pa.array(lines.raw[start:end], pa.large_string()),
                "problem": pa.array(lines.problems[start:end], pa.string()),
            }
        )
        con.register("_ct_lines", table)
        try:
            con.execute(statement("_ct_lines"), params)
        finally:
            con.unregister("_ct_lines")


def _chunks(sizes: list[int]) -> Iterator[tuple[int, int]]:
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and total + size > LINES_CHUNK_BYTES:
            yield start, index
            start, total = index, 0
        total += size
    if start < len(sizes):
        yield start, len(sizes)
