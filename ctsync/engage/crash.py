"""Test hook of the crash-safety tests: the process exits at once at a named point of a sync run.

``CTSYNC_TEST_CRASH_AT=<checkpoint>[:<n>]`` makes the process exit (``os._exit(86)``, no cleanup,
like a kill) the n-th time (default 1st) it reaches the checkpoint: ``outbox_committed``,
``chunk_handed``, ``response_received`` (a request's results are in memory, not yet committed) or
``results_committed``. Only the crash-safety tests set it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from ctsync.errors import CtsyncError

CRASH_HOOK_ENV = "CTSYNC_TEST_CRASH_AT"
CRASH_EXIT_CODE = 86
CHECKPOINTS = ("outbox_committed", "chunk_handed", "response_received", "results_committed")


class CrashHook:
    """Exit the process abruptly at a named checkpoint (see the module docstring)."""

    def __init__(self, checkpoint: str | None, nth: int) -> None:
        self.checkpoint = checkpoint
        self.nth = nth
        self.seen = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CrashHook:
        spec = environ.get(CRASH_HOOK_ENV, "").strip()
        if not spec:
            return cls(None, 0)
        name, _, count = spec.partition(":")
        if name not in CHECKPOINTS or (count and not count.isdigit()):
            raise CtsyncError(f"{CRASH_HOOK_ENV} must be one of {', '.join(CHECKPOINTS)}, optionally with :<n>")
        return cls(name, int(count) if count else 1)

    def reached(self, checkpoint: str) -> None:
        if checkpoint != self.checkpoint:
            return
        self.seen += 1
        if self.seen >= self.nth:
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)
