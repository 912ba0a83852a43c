"""Where a lake's files live: its root (a local folder or an fsspec URL), the layout under it, and
moving files there.

```
<root>/<schema>/<table>/timestamp__date=YYYY-MM-DD/part-<batch>-<n>-<i>.parquet   event tables, identifies
<root>/<schema>/users/users.parquet                                                 users (one file)
<root>/_staging/<schema>/<batch>/...                                                a batch not yet published
```

Paths inside the lake are kept relative to the root (``clevertap_prod/app_launched/...``), so the
state database's record of a batch does not depend on how the root is spelled.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from ctsync.errors import CtsyncError
from ctsync.exports.files import filesystem_for

PARTITION_COLUMN = "timestamp__date"
"""The partition column of event tables and ``identifies``: the UTC date of ``timestamp``. No loader
column can take this name: go-snakecase joins words with one ``_``, and the loader's own ``__`` names end
in ``__v_varchar``."""

STAGING = "_staging"
USERS_FILE = "users.parquet"


@dataclass(frozen=True)
class Lake:
    """A lake root. ``root`` is an absolute local path or a URL without a trailing ``/``."""

    root: str
    fs: Any
    local: bool

    @classmethod
    def open(cls, root: str) -> Lake:
        text = root.strip()
        if not text:
            raise CtsyncError("the lake is empty: set --lake or CTSYNC_LAKE to a folder or an s3://... URL")
        if text.startswith("file://"):
            text = text[len("file://") :]
        if "://" not in text:
            return cls(os.path.abspath(text).rstrip("/") or "/", None, True)
        return cls(text.rstrip("/"), filesystem_for(text), False)

    def describe(self) -> str:
        return self.root

    def url(self, relative: str) -> str:
        """The full path or URL of a path relative to the root."""
        return f"{self.root}/{relative}" if relative else self.root

    def relative(self, url: str) -> str:
        """The inverse of :meth:`url` (``fsspec`` lists remote paths without their protocol)."""
        full = url if self.local or "://" in url else f"{self.root.split('://', 1)[0]}://{url}"
        return full.removeprefix(self.root).lstrip("/")

    def staging(self, schema: str, batch: str = "") -> str:
        return f"{STAGING}/{schema}/{batch}".rstrip("/")

    def attach(self, duck: duckdb.DuckDBPyConnection) -> None:
        """Let DuckDB read the lake's files (object storage goes through fsspec, not DuckDB's httpfs)."""
        if not self.local:
            duck.register_filesystem(self.fs)

    def files(self, relative: str) -> list[str]:
        """The Parquet files below a folder, as relative paths (none when the folder does not exist)."""
        if self.local:
            folder = Path(self.url(relative))
            if not folder.is_dir():
                return []
            return sorted(self.relative(str(path)) for path in folder.rglob("*.parquet") if path.is_file())
        try:
            found = self.fs.find(self.url(relative))
        except FileNotFoundError:
            return []
        return sorted(self.relative(str(path)) for path in found if str(path).endswith(".parquet"))

    def entries(self, relative: str) -> list[str]:
        """The names directly in a folder (none when it does not exist)."""
        if self.local:
            folder = Path(self.url(relative))
            return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
        try:
            return sorted(str(path).rstrip("/").rsplit("/", 1)[-1] for path in self.fs.ls(self.url(relative)))
        except FileNotFoundError:
            return []

    def exists(self, relative: str) -> bool:
        if self.local:
            return os.path.exists(self.url(relative))
        return bool(self.fs.exists(self.url(relative)))

    def put(self, local_path: str, relative: str) -> None:
        """Copy a local file into the lake (a no-op path for local lakes, whose staging is written in place)."""
        if self.local:
            target = self.url(relative)
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            if os.path.abspath(local_path) != target:
                shutil.copyfile(local_path, target)
            return
        self.fs.put_file(local_path, self.url(relative))

    def move(self, source: str, target: str) -> None:
        """Move a file within the lake, replacing ``target``. Idempotent: a source already moved is done.

        A local move is a rename (atomic); on object storage it is a copy and a delete, so a move cut
        short leaves both, and moving again finishes it."""
        if not self.exists(source):
            if self.exists(target):
                return
            raise CtsyncError(
                f"the staged file {self.url(source)} is gone and {self.url(target)} was never written: "
                "something removed a batch's files before it was published (_lake_batches names the batch)"
            )
        if self.local:
            Path(self.url(target)).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.url(source), self.url(target))
            return
        self.fs.copy(self.url(source), self.url(target))
        self.fs.rm(self.url(source))

    def remove(self, relative: str) -> None:
        """Remove a folder and everything in it, if it exists."""
        if self.local:
            shutil.rmtree(self.url(relative), ignore_errors=True)
            return
        try:
            self.fs.rm(self.url(relative), recursive=True)
        except FileNotFoundError:
            pass


def partition_day(relative: str) -> date | None:
    """The day of a file's ``timestamp__date=`` folder (None: an unpartitioned file)."""
    for part in relative.split("/"):
        if part.startswith(PARTITION_COLUMN + "="):
            try:
                return date.fromisoformat(part.split("=", 1)[1])
            except ValueError:
                return None
    return None
