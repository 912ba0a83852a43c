"""What an export file holds: its format, its first lines, and all its lines even when its gzip breaks.

DuckDB reads well-formed files whole. This module is for the rest: telling a CleverTap JSON-lines
export from anything else in the folder before it is read, and splitting a file DuckDB could not
read (a broken gzip stream, a line over ``MAX_LINE_BYTES``) into numbered lines, each with the
problem that keeps it out of the tables, if any.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from enum import StrEnum

UTF8_BOM = b"\xef\xbb\xbf"
"""A byte order mark some tools write at the start of a UTF-8 file: not part of the first line."""

MAX_LINE_BYTES = 32 * 1024 * 1024
"""The longest line ctsync loads. DuckDB's JSON reader is given this as its ``maximum_object_size`` (its
buffers are twice that per file read in parallel, which a 1.5 GB memory limit allows); a longer line is
rejected on its own, with its size, and the rest of its file loads."""

KEPT_RAW_BYTES = 64 * 1024
"""How much of a line too long to load ``_rejected.raw`` keeps."""

_SNIFF_LINES = 3
"""Lines read from the start of a file to tell its format."""


class FileKind(StrEnum):
    EVENTS = "events"
    PROFILES = "profiles"
    UNKNOWN = "unknown"


def is_gzip(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b"


def first_lines(data: bytes, count: int) -> list[bytes]:
    """The first ``count`` lines of the (decompressed) content, read lazily from gzip data."""
    lines = _first_lines(data, count)
    if lines:
        lines[0] = lines[0].removeprefix(UTF8_BOM)
    return lines


def _first_lines(data: bytes, count: int) -> list[bytes]:
    if is_gzip(data):
        # Small steps: only as much is inflated as the first lines need, not the whole file.
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        chunk = b""
        position = 0
        while chunk.count(b"\n") < count and len(chunk) <= (1 << 20):
            if decoder.unconsumed_tail:
                piece = decoder.unconsumed_tail
            elif position < len(data) and not decoder.eof:
                piece = data[position : position + 16384]
                position += 16384
            else:
                break
            try:
                chunk += decoder.decompress(piece, 16384)
            except zlib.error:
                break
        return (chunk.split(b"\n", count) + [b""] * count)[:count]
    return (data[: 1 << 20].split(b"\n", count) + [b""] * count)[:count]


def sniff_kind(data: bytes) -> FileKind:
    """Events or profiles, from the first JSON record: events carry ``eventName``."""
    for line in first_lines(data, 2):
        text = line.strip()
        if not text.startswith(b"{"):
            continue
        try:
            record = json.loads(text)
        except ValueError:
            return FileKind.EVENTS
        if (
            isinstance(record, dict)
            and "eventName" not in record
            and "ts" not in record
            and any(
                key in record for key in ("clevertapId", "identity", "objectId", "Email", "Phone", "all_identities")
            )
        ):
            return FileKind.PROFILES
        return FileKind.EVENTS
    return FileKind.EVENTS


_OTHER_FORMATS = {
    ".csv": "a CSV file",
    ".tsv": "a TSV file",
    ".xml": "an XML file",
    ".parquet": "a Parquet file",
    ".avro": "an Avro file",
    ".zip": "a ZIP archive",
    ".xlsx": "an Excel workbook",
}
_COMPRESSION_SUFFIXES = (".gz", ".gzip")


def _named_format(name: str) -> str | None:
    """What the file's name says it is, when that is another format than JSON lines."""
    lowered = name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        lowered = lowered.removesuffix(suffix)
    for suffix, description in _OTHER_FORMATS.items():
        if lowered.endswith(suffix):
            return description
    return None


def refusal(name: str, data: bytes, *, named_export: bool) -> str | None:
    """Why this file is not a CleverTap JSON-lines export (None: it is one, or may be).

    ``named_export``: the name follows CleverTap's legacy naming, so a file whose first lines are
    damaged is still read as an export (its bad lines are rejected one by one); only content that is
    plainly another format refuses it. Any other file must show a JSON object within its first lines.
    An empty file is an export with no lines.
    """
    other = _other_format(data)
    if other is None and not named_export:
        lines = [line.strip() for line in first_lines(data, _SNIFF_LINES)]
        if not any(lines) or any(line.startswith(b"{") for line in lines):
            return None
        sample = next(line for line in lines if line)[:60].decode("utf-8", errors="replace")
        other = _named_format(name) or f"not JSON lines (it starts with {sample!r})"
    if other is None:
        return None
    return f"{other}: ctsync loads CleverTap's JSON-lines exports (.json, .json.gz), one JSON object per line"


def _other_format(data: bytes) -> str | None:
    """The format the content plainly is, when it is not JSON lines."""
    head = b"\n".join(first_lines(data, _SNIFF_LINES)) if is_gzip(data) else data[:65536]
    if data[:4] == b"PAR1" or head[:4] == b"PAR1":
        return "a Parquet file"
    if data[:4] == b"PK\x03\x04":
        return "a ZIP archive"
    if head.removeprefix(UTF8_BOM).lstrip().startswith(b"<"):
        return "an XML or HTML file"
    if b"\x00" in head:
        return "a binary file"
    return None


def is_header_line(line: bytes, event_name_hint: str | None = None, next_line: bytes = b"") -> bool:
    """A bare event-name line, as CleverTap's legacy exports may start with.

    It must be an event name: the one in the file name when the name carries one (CleverTap writes
    whitespace and slashes as ``-`` there), else the ``eventName`` of the record that follows it.
    Anything else on the first line is a line of the file like any other (and rejected if not an event).
    """
    text = line.strip().removeprefix(UTF8_BOM)
    if not 0 < len(text) <= 512 or text.startswith((b"{", b"[")):
        return False
    name = text.decode("utf-8", errors="replace").strip('"')
    if event_name_hint is not None:
        return event_name_hint in (name, file_safe_name(name))
    try:
        record = json.loads(next_line)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("eventName") == name


def file_safe_name(event_name: str) -> str:
    """An event name as CleverTap writes it in file names."""
    return "".join("-" if ch.isspace() or ch in "/\\\0" else ch for ch in event_name)


@dataclass
class Inflated:
    """A file's content, decompressed as far as it can be trusted."""

    content: bytes
    broken: str | None = None
    """Why the content stops early, with the byte where the gzip data breaks."""
    corrupt: bool = False
    """The gzip data is damaged (not merely cut short): what the damaged member decompresses to cannot be
    verified, so none of it is in ``content``; only the intact members before it are."""


_STEP = 1 << 16
"""Compressed bytes inflated per step: where damage is found, to this precision."""


def inflate(data: bytes) -> Inflated:
    """Decompress gzip data (every member of a multi-member file) as far as it can be trusted.

    Data cut short (a partial upload) keeps everything before the cut: deflate output up to the last
    byte present is exact. Damaged data (zlib reports an error, a checksum included) is another matter:
    the bytes inflated before the error was found may already be garbage that happens to look like
    JSON, so the damaged member contributes nothing, and only the intact members before it remain.
    """
    if not is_gzip(data):
        return Inflated(data)
    parts: list[bytes] = []
    position = 0
    view = memoryview(data)
    while True:
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        member: list[bytes] = []
        member_start = position
        try:
            while position < len(view) and not decoder.eof:
                member.append(decoder.decompress(view[position : position + _STEP]))
                position += min(_STEP, len(view) - position)
        except zlib.error as exc:
            return Inflated(
                b"".join(parts),
                f"the gzip data is damaged ({exc}, found between bytes {position:,} and "
                f"{min(position + _STEP, len(data)):,} of {len(data):,}); what the damaged gzip member (from byte "
                f"{member_start:,}) decompresses to cannot be verified, so none of it is loaded",
                corrupt=True,
            )
        parts += member
        if not decoder.eof:
            return Inflated(
                b"".join(parts),
                f"the gzip data is cut short: the file ends at byte {len(data):,}, inside compressed data",
            )
        rest = decoder.unused_data
        position = len(data) - len(rest)
        if not rest.strip(b"\x00"):
            return Inflated(b"".join(parts))
        if not is_gzip(rest):
            return Inflated(
                b"".join(parts), f"bytes that are not gzip data follow the gzip data at byte {position:,}", corrupt=True
            )


@dataclass
class ExactLines:
    """Lines of one file, split in Python so each keeps its number, its text and its problem."""

    header_lines: int = 0
    line_numbers: list[int] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    problems: list[str | None] = field(default_factory=list)
    """Why a line cannot load whatever its content (invalid UTF-8, too long, cut off); None: check it."""
    broken: str | None = None
    """See ``Inflated.broken``: the lines before the break are all here."""
    corrupt: bool = False
    """See ``Inflated.corrupt``."""


def split_lines(data: bytes, header: bool) -> ExactLines:
    """Every non-blank line of the file, numbered from 1, with what keeps it out of the tables, if known."""
    inflated = inflate(data)
    content = inflated.content
    result = ExactLines(broken=inflated.broken, corrupt=inflated.corrupt)
    pieces = content.split(b"\n")
    cut_off = inflated.broken is not None and pieces[-1] != b""
    if pieces and pieces[-1] == b"":
        pieces.pop()
    if pieces:
        pieces[0] = pieces[0].removeprefix(UTF8_BOM)
    for index, piece in enumerate(pieces):
        line = piece[:-1] if piece.endswith(b"\r") else piece
        if index == 0 and header:
            result.header_lines = 1
            continue
        if not line.strip():
            continue  # blank lines carry no data and are not lines of the file (docs/decisions.md)
        problem = None
        if cut_off and index == len(pieces) - 1:
            problem = f"the line is cut off where the file breaks ({inflated.broken})"
        if len(line) > MAX_LINE_BYTES:
            problem = (
                f"the line is {len(line):,} bytes, longer than the {MAX_LINE_BYTES:,} bytes ctsync loads "
                f"(raw keeps its first {KEPT_RAW_BYTES:,} bytes)"
            )
            line = line[:KEPT_RAW_BYTES]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("utf-8", errors="replace")
            problem = problem or "invalid UTF-8"
        result.line_numbers.append(index + 1)
        result.raw.append(text)
        result.problems.append(problem)
    return result
