"""The files of one batch: each read once, told apart, and staged in DuckDB line for line.

A file found under the paths ends one of four ways before any row is written: skipped (a dot file,
another export kind, the same content as another file of the run), refused as a whole (not a
CleverTap JSON-lines export, or unreadable), or prepared for staging. Staging then reads every
prepared file into ``_ct_rows`` / ``_ct_profile_rows``: whole files through DuckDB, and line by line
the files DuckDB could not read or that hold a line that does not validate. A file whose gzip stream
breaks stages the lines before the break and says where it broke.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from ctsync.errors import CtsyncError
from ctsync.exports.content import (
    ExactLines,
    FileKind,
    first_lines,
    is_gzip,
    is_header_line,
    refusal,
    sniff_kind,
    split_lines,
)
from ctsync.exports.files import ExportFile, checksum, read_bytes
from ctsync.warehouse import events, profiles
from ctsync.warehouse.bookkeeping import FileCounts
from ctsync.warehouse.staging import StagedFile


@dataclass
class PreparedFile:
    export_file: ExportFile
    kind: FileKind
    data: bytes
    checksum: str
    staged: StagedFile


@dataclass
class Outcome:
    """A file that goes no further than preparation: skipped, refused (``unsupported``) or ``failed``."""

    export_file: ExportFile
    status: str
    reason: str
    checksum: str = ""


@dataclass
class Prepared:
    files: list[PreparedFile] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)


def prepare_files(batch: list[ExportFile], kinds: frozenset[FileKind] | None, workdir: str, seen: set[str]) -> Prepared:
    """Read each file once: checksum, format (refused if not a CleverTap JSON-lines export), kind (by name,
    else by content), header line, local copy. ``seen``: checksums already prepared in this run."""
    prepared = Prepared()
    for index, export_file in enumerate(batch):
        if export_file.hidden:
            prepared.outcomes.append(
                Outcome(export_file, "skipped", "a hidden file (its name or folder starts with .)")
            )
            continue
        try:
            data = read_bytes(export_file)
        except CtsyncError as exc:
            prepared.outcomes.append(Outcome(export_file, "failed", str(exc)))
            continue
        digest = checksum(data)
        refused = refusal(export_file.name, data, named_export=export_file.has_export_name)
        if refused is not None:
            prepared.outcomes.append(Outcome(export_file, "unsupported", refused, digest))
            continue
        kind = export_file.kind if export_file.kind is not FileKind.UNKNOWN else sniff_kind(data)
        if kinds is not None and kind not in kinds:
            prepared.outcomes.append(Outcome(export_file, "skipped", f"a {kind.value} export, not loaded here"))
            continue
        if digest in seen:
            prepared.outcomes.append(Outcome(export_file, "skipped", "same content as another file"))
            continue
        seen.add(digest)
        local_path = export_file.url
        if export_file.is_remote:
            local_path = os.path.join(workdir, f"{index}-{export_file.name}")
            with open(local_path, "wb") as handle:
                handle.write(data)
        first, second = first_lines(data, 2)
        header = is_header_line(first, export_file.event_name_hint, second)
        staged = StagedFile(
            index,
            local_path,
            is_gzip(data),
            header,
            export_file.series,
            sent_at=exported_at(export_file),
            export_id=export_file.request_id,
        )
        prepared.files.append(PreparedFile(export_file, kind, data, digest, staged))
    return prepared


Broken = tuple[str, str]
"""A file whose gzip data breaks: its status (``truncated``: cut short, the lines before the cut loaded;
``corrupt``: damaged, only its intact gzip members loaded) and the reason, with where."""


def stage_events(
    duck: duckdb.DuckDBPyConnection, items: list[PreparedFile], counts: dict[int, FileCounts]
) -> dict[int, Broken]:
    """Stage event files into ``_ct_rows``; returns the files whose gzip data breaks."""
    events.create_rows_table(duck)
    unreadable = events.stage_fast(duck, [item.staged for item in items])
    return _reread(duck, items, counts, unreadable, events.stage_exact, "_ct_rows", "_ct_files")


def stage_profiles(
    duck: duckdb.DuckDBPyConnection, items: list[PreparedFile], counts: dict[int, FileCounts]
) -> dict[int, Broken]:
    """Stage profile files into ``_ct_profile_rows``; returns the files whose gzip data breaks."""
    profiles.create_rows_table(duck)
    unreadable = profiles.stage_fast(duck, [item.staged for item in items])
    return _reread(duck, items, counts, unreadable, profiles.stage_exact, "_ct_profile_rows", "_ct_profile_files")


def _reread(
    duck: duckdb.DuckDBPyConnection,
    items: list[PreparedFile],
    counts: dict[int, FileCounts],
    unreadable: set[int],
    stage_exact: Callable[[duckdb.DuckDBPyConnection, int, ExactLines], None],
    rows: str,
    files: str,
) -> dict[int, Broken]:
    """Files DuckDB could not read, or with a line that did not validate, are read again line by line."""
    again = unreadable | set(events.dirty_files(duck, rows, files))
    events.drop_fast_header_rows(duck, rows, files)
    broken: dict[int, Broken] = {}
    for item in items:
        file_id = item.staged.file_id
        if file_id in again:
            lines = split_lines(item.data, item.staged.header)
            stage_exact(duck, file_id, lines)
            counts[file_id].header_lines = lines.header_lines
            if lines.broken is not None:
                broken[file_id] = ("corrupt" if lines.corrupt else "truncated", lines.broken)
        else:
            counts[file_id].header_lines = 1 if item.staged.header else 0
    return broken


def exported_at(export_file: ExportFile) -> str | None:
    """CleverTap's run timestamp from the file name (epoch seconds, or milliseconds from 1e11 on), as
    ISO-8601; None when the name has none (or not a time)."""
    if export_file.run_ts is None:
        return None
    try:
        epoch = int(export_file.run_ts)
        return datetime.fromtimestamp(epoch / 1000 if epoch >= 10**11 else epoch, UTC).isoformat()
    except (ValueError, OverflowError, OSError):
        return None
