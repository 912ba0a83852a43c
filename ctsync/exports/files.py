"""Finding export files (local paths, globs, object storage) and reading their bytes."""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from ctsync.errors import CtsyncError

_EVENT_NAME = re.compile(
    r"^(?P<request_id>[^-]+)-(?P<run_ts>\d+)-(?P<event_name>.+)-(?P<day>\d{8})-(?P<file_index>\d+)-(?P<db_id>[^-.]+)"
    r"(?P<suffix>\.json(?:\.gz|\.gzip)?)$"
)
_PROFILE_NAME = re.compile(
    r"^(?P<account_id>[^-]+)-(?P<request_id>[^-]+)-(?P<run_ts>\d+)-(?P<db_id>[^-]+)-json(?P<suffix>\.gz|\.gzip)?$"
)
_EXPORT_SUFFIXES = (".json", ".json.gz", ".json.gzip", ".gz", ".gzip", ".jsonl", ".ndjson")


class FileKind(StrEnum):
    EVENTS = "events"
    PROFILES = "profiles"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ExportFile:
    """One file to load. ``url`` is a local path or an fsspec URL (``s3://bucket/key``)."""

    url: str
    size: int
    kind: FileKind
    request_id: str | None = None
    run_ts: str | None = None
    event_name_hint: str | None = None
    """Event name as written in the file name (whitespace and slashes became ``-``)."""
    day: str | None = None
    file_index: int | None = None
    db_id: str | None = None
    fingerprint: str | None = None
    """What identifies this version of the file without reading it (ETag, or size and mtime)."""

    @property
    def series(self) -> str:
        """The export run and file series this file is a chunk of (CleverTap splits a series by size).

        Chunks of one series are parts of one export run, so identical events in two of them are two
        events; the same event in two series (overlapping exports) is one. A file whose name does not
        follow CleverTap's pattern is a series of its own.
        """
        if self.kind is FileKind.EVENTS and self.request_id is not None:
            return "|".join((self.request_id, self.run_ts or "", self.event_name_hint or "", self.day or ""))
        return self.url

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_remote(self) -> bool:
        return "://" in self.url and not self.url.startswith("file://")


def parse_file_name(url: str, size: int = 0, fingerprint: str | None = None) -> ExportFile:
    """Describe a file from its name, CleverTap's legacy naming being the expected one."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    match = _EVENT_NAME.match(name)
    if match:
        return ExportFile(
            url=url,
            size=size,
            fingerprint=fingerprint,
            kind=FileKind.EVENTS,
            request_id=match["request_id"],
            run_ts=match["run_ts"],
            event_name_hint=match["event_name"],
            day=match["day"],
            file_index=int(match["file_index"]),
            db_id=match["db_id"],
        )
    match = _PROFILE_NAME.match(name)
    if match:
        return ExportFile(
            url=url,
            size=size,
            fingerprint=fingerprint,
            kind=FileKind.PROFILES,
            request_id=match["request_id"],
            run_ts=match["run_ts"],
            db_id=match["db_id"],
        )
    return ExportFile(url=url, size=size, kind=FileKind.UNKNOWN, fingerprint=fingerprint)


def discover_files(paths: Sequence[str]) -> list[ExportFile]:
    """Expand paths, directories and globs (local or fsspec URLs) into a sorted file list.

    A path that matches nothing is an error: a typo must not look like "nothing to load".
    """
    if not paths:
        raise CtsyncError("give at least one file, folder or glob to load")
    found: dict[str, ExportFile] = {}
    for path in paths:
        matches = _expand_remote(path) if _is_url(path) else _expand_local(path)
        if not matches:
            raise CtsyncError(f"{path!r} matches no export file (.json, .json.gz, .gz)")
        for export_file in matches:
            found[export_file.url] = export_file
    return sorted(found.values(), key=lambda f: f.url)


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _looks_like_export(name: str) -> bool:
    return name.endswith(_EXPORT_SUFFIXES) and not name.startswith(".")


def _expand_local(path: str) -> list[ExportFile]:
    if path.startswith("file://"):
        path = path[len("file://") :]
    candidates: Iterable[str]
    if glob.has_magic(path):
        candidates = glob.glob(path, recursive=True)
    elif os.path.isdir(path):
        candidates = (
            os.path.join(root, name)
            for root, _dirs, names in os.walk(path)
            for name in names
            if _looks_like_export(name)
        )
    elif os.path.exists(path):
        candidates = [path]
    else:
        return []
    result = []
    for candidate in candidates:
        if os.path.isfile(candidate):
            stat = os.stat(candidate)
            result.append(
                parse_file_name(os.path.abspath(candidate), stat.st_size, f"{stat.st_size}:{stat.st_mtime_ns}")
            )
    return result


def filesystem_for(url: str) -> Any:
    """The fsspec filesystem for a URL; credentials come from the environment as usual."""
    import fsspec

    try:
        fs, _ = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise CtsyncError(f"cannot open {url!r}: {exc}") from exc
    return fs


def _expand_remote(url: str) -> list[ExportFile]:
    fs = filesystem_for(url)
    protocol = url.split("://", 1)[0]
    try:
        if glob.has_magic(url):
            infos = fs.glob(url, detail=True)
        elif fs.isdir(url):
            infos = fs.find(url, detail=True)
        elif fs.exists(url):
            infos = {url: fs.info(url)}
        else:
            return []
    except (OSError, PermissionError) as exc:
        raise CtsyncError(f"cannot list {url!r}: {exc}") from exc
    result = []
    for key, info in infos.items():
        if info.get("type") == "directory":
            continue
        name = str(key).rsplit("/", 1)[-1]
        if not glob.has_magic(url) and not _looks_like_export(name):
            continue
        full = key if "://" in str(key) else f"{protocol}://{key}"
        size = int(info.get("size") or 0)
        tag = (
            info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("LastModified") or info.get("mtime")
        )
        result.append(parse_file_name(full, size, f"{size}:{tag}" if tag else None))
    return result


def read_bytes(export_file: ExportFile) -> bytes:
    """The file's stored bytes (still compressed)."""
    try:
        if export_file.is_remote:
            fs = filesystem_for(export_file.url)
            data: bytes = fs.cat_file(export_file.url)
            return data
        return Path(export_file.url).read_bytes()
    except OSError as exc:
        raise CtsyncError(f"cannot read {export_file.url}: {exc}") from exc


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_gzip(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b"


def decompress(data: bytes, url: str) -> bytes:
    """Gzip is recognised by its magic bytes, whatever the file is called."""
    if not is_gzip(data):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise CtsyncError(f"{url} is not a readable gzip file ({exc})") from exc


def first_line(data: bytes) -> bytes:
    """First line of the (decompressed) content, read lazily from gzip data."""
    return first_lines(data, 1)[0]


UTF8_BOM = b"\xef\xbb\xbf"
"""A byte order mark some tools write at the start of a UTF-8 file: not part of the first line."""


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
    import json

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


def is_header_line(line: bytes, event_name_hint: str | None = None) -> bool:
    """A bare event-name line, as CleverTap's legacy exports may start with.

    It is short and not JSON-object-like; when the file name carries the event name, the
    line must be that name (CleverTap writes whitespace and slashes as ``-`` in file names).
    """
    text = line.strip().lstrip(b"\xef\xbb\xbf")
    if not 0 < len(text) <= 512 or text.startswith((b"{", b"[")):
        return False
    if event_name_hint is None:
        return True
    name = text.decode("utf-8", errors="replace").strip('"')
    return event_name_hint in (name, file_safe_name(name))


def file_safe_name(event_name: str) -> str:
    """An event name as CleverTap writes it in file names."""
    return "".join("-" if ch.isspace() or ch in "/\\\0" else ch for ch in event_name)
