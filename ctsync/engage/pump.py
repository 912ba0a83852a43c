"""Taking a destination's delivery results off its thread, so the run commits what has arrived."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from ctsync.destinations.base import DeliveryResult


class ResultPump:
    """Consumes a destination's results on a helper thread; the caller commits what has arrived.

    Each request's results are committed atomically (outbox status and confirmed state in one
    transaction). When several requests complete while a commit runs, the next transaction
    takes all of them: one commit per request when results trickle in, fewer and larger
    commits at full speed, and never a delay before an arrived result is committed.
    """

    def __init__(self, results: Iterator[list[DeliveryResult]], *, first: list[list[DeliveryResult]]) -> None:
        self._results = results
        self._queue: queue.SimpleQueue[list[DeliveryResult] | _End] = queue.SimpleQueue()
        for batch in first:
            self._queue.put(batch)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._consume, name="ctsync-results", daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        error: BaseException | None = None
        try:
            for batch in self._results:
                self._queue.put(batch)
                if self._stopping.is_set():
                    break
        except BaseException as exc:  # handed to the caller's thread
            error = exc
        finally:
            close = getattr(self._results, "close", None)
            if callable(close):
                close()
            self._queue.put(_End(error))

    def batches(self, *, max_results: int) -> Iterator[list[list[DeliveryResult]]]:
        """Lists of result lists: everything that has arrived, at most ``max_results`` results each."""
        ended: _End | None = None
        while ended is None:
            item = self._queue.get()
            arrived: list[list[DeliveryResult]] = []
            count = 0
            while True:
                if isinstance(item, _End):
                    ended = item
                    break
                arrived.append(item)
                count += len(item)
                if count >= max_results:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if arrived:
                yield arrived
        if ended.error is not None:
            raise ended.error

    def stop(self) -> None:
        """Stop taking results (requests in flight finish) and wait for the helper thread."""
        self._stopping.set()
        while self._thread.is_alive():
            try:  # keep the queue moving so the helper can finish
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass


@dataclass(frozen=True)
class _End:
    error: BaseException | None
