"""JSON-lines file destination: one Identify payload per line, for audits and dry runs."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from io import FileIO
from pathlib import Path

from ctsync.destinations.base import DeliveryResult, DeliveryStatus, OutboundMessage
from ctsync.destinations.http import dump_json, not_sent
from ctsync.errors import CtsyncError

logger = logging.getLogger(__name__)


class JsonlFileDestination:
    """Appends each payload as one JSON line; every chunk is flushed and fsynced."""

    kind = "jsonl"

    def __init__(self, path: str | os.PathLike[str], *, name: str = "jsonl", chunk_size: int = 1000):
        if chunk_size < 1:
            raise CtsyncError("chunk_size must be at least 1")
        self.name = name
        self.path = Path(path)
        self.chunk_size = chunk_size
        self._file: FileIO | None = None

    def __repr__(self) -> str:
        return f"JsonlFileDestination(name={self.name!r}, path={str(self.path)!r})"

    def deliver(self, messages: Sequence[OutboundMessage]) -> Iterator[list[DeliveryResult]]:
        for start in range(0, len(messages), self.chunk_size):
            chunk = messages[start : start + self.chunk_size]
            try:
                yield self._write(chunk)
            except OSError as exc:
                reason = f"could not write {self.path}: {exc.strerror or exc}"
                logger.warning("%s: %s", self.name, reason)
                self._discard_file()
                yield not_sent((m.message_id for m in messages[start:]), reason)
                return

    def _write(self, chunk: Sequence[OutboundMessage]) -> list[DeliveryResult]:
        lines: list[bytes] = []
        out: list[DeliveryResult] = []
        for message in chunk:
            try:
                lines.append(dump_json(message.payload) + b"\n")
            except TypeError as exc:
                out.append(DeliveryResult(message.message_id, DeliveryStatus.REJECTED, "not_json", str(exc)))
                continue
            out.append(DeliveryResult(message.message_id, DeliveryStatus.SENT))
        handle = self._open()
        end = handle.seek(0, os.SEEK_END)
        try:
            _write_all(handle, b"".join(lines))
            os.fsync(handle.fileno())
        except OSError:
            _truncate(handle, end)  # leave no half-written line behind
            raise
        return out

    def _open(self) -> FileIO:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab", buffering=0)  # whole chunks, fsynced
        return self._file

    def _discard_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonlFileDestination:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _write_all(handle: FileIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = handle.write(view)
        view = view[written or 0 :]


def _truncate(handle: FileIO, size: int) -> None:
    try:
        handle.truncate(size)
    except OSError:
        logger.warning("could not remove a partly written chunk from %s", handle.name)
