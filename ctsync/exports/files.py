"""Finding export files (local paths, globs, object storage) and reading their bytes."""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctsync.errors import CtsyncError
from ctsync.exports.content import FileKind, file_safe_name

__all__ = ["ExportFile", "FileKind", "checksum", "discover_files", "file_safe_name", "parse_file_name", "read_bytes"]

_EVENT_NAME = re.compile(
    r"^(?P<request_id>[^-]+)-(?P<run_ts>\d+)-(?P<event_name>.+)-(?P<day>\d{8})-(?P<file_index>\d+)-(?P<db_id>[^-.]+)"
    r"(?P<suffix>\.json(?:\.gz|\.gzip)?)$"
)
_PROFILE_NAME = re.compile(
    r"^(?P<account_id>[^-]+)-(?P<request_id>[^-]+)-(?P<run_ts>\d+)-(?P<db_id>[^-]+)-json(?P<suffix>\.gz|\.gzip)?$"
)


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
    hidden: bool = False
    """A dot file, or a file in a dot folder under the given path (``.DS_Store``, a tool's marker):
    listed as skipped, never read."""

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

    @property
    def has_export_name(self) -> bool:
        """The name follows CleverTap's legacy naming for event or profile exports."""
        return self.kind is not FileKind.UNKNOWN


def parse_file_name(url: str, size: int = 0, fingerprint: str | None = None, *, hidden: bool = False) -> ExportFile:
    """Describe a file from its name, CleverTap's legacy naming being the expected one."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    hidden = hidden or name.startswith(".")
    match = _EVENT_NAME.match(name)
    if match:
        return ExportFile(
            url=url,
            size=size,
            fingerprint=fingerprint,
            hidden=hidden,
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
            hidden=hidden,
            kind=FileKind.PROFILES,
            request_id=match["request_id"],
            run_ts=match["run_ts"],
            db_id=match["db_id"],
        )
    return ExportFile(url=url, size=size, kind=FileKind.UNKNOWN, fingerprint=fingerprint, hidden=hidden)


def discover_files(paths: Sequence[str]) -> list[ExportFile]:
    """Expand paths, directories and globs (local or fsspec URLs) into a sorted file list.

    Every file is listed, whatever its name: the loader loads it, skips it (hidden files) or refuses it
    with a reason, never passes over it silently. A path that matches nothing is an error (a typo must
    not look like "nothing to load"); an existing folder with no files in it yet is not.
    """
    if not paths:
        raise CtsyncError("give at least one file, folder or glob to load")
    found: dict[str, ExportFile] = {}
    for path in paths:
        matches = _expand_remote(path) if _is_url(path) else _expand_local(path)
        if not matches and not _is_folder(path):
            raise CtsyncError(f"{path!r} matches no file")
        for export_file in matches:
            found[export_file.url] = export_file
    return sorted(found.values(), key=lambda f: f.url)


def _is_folder(path: str) -> bool:
    """An existing folder (or object-storage prefix), named without a glob."""
    if not _is_url(path):
        return os.path.isdir(path.removeprefix("file://"))
    if glob.has_magic(path):
        return False
    try:
        return bool(filesystem_for(path).isdir(path))
    except (OSError, PermissionError):
        return False


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _expand_local(path: str) -> list[ExportFile]:
    if path.startswith("file://"):
        path = path[len("file://") :]
    candidates: Iterable[str]
    # What exists is taken as named, brackets and all ("exports [eu]/"); only a name that does not is a glob.
    if os.path.isdir(path):
        candidates = (os.path.join(root, name) for root, _dirs, names in os.walk(path) for name in names)
    elif os.path.exists(path):
        candidates = [path]
    elif glob.has_magic(path):
        candidates = glob.glob(path, recursive=True)
    else:
        return []
    result = []
    for candidate in candidates:
        if os.path.isfile(candidate):
            stat = os.stat(candidate)
            fingerprint = f"{stat.st_size}:{stat.st_mtime_ns}"
            hidden = _in_dot_folder(os.path.relpath(candidate, path)) if os.path.isdir(path) else False
            result.append(parse_file_name(os.path.abspath(candidate), stat.st_size, fingerprint, hidden=hidden))
    return result


def _in_dot_folder(relative: str) -> bool:
    """Whether a path below the folder given to load passes through a dot folder."""
    return any(part.startswith(".") for part in relative.replace(os.sep, "/").split("/")[:-1])


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
        full = key if "://" in str(key) else f"{protocol}://{key}"
        below = str(key).removeprefix(url.split("://", 1)[-1].rstrip("/")).lstrip("/")
        size = int(info.get("size") or 0)
        tag = (
            info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("LastModified") or info.get("mtime")
        )
        hidden = not glob.has_magic(url) and _in_dot_folder(below)
        result.append(parse_file_name(full, size, f"{size}:{tag}" if tag else None, hidden=hidden))
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
