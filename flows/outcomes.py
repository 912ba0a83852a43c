"""How a flow run that left work undone ends: Failed, after publishing its artifact.

A run that raises ends in Prefect's Failed state, so the runs page shows it red and an
automation on failed runs (README, section 4) notifies someone.
"""

from __future__ import annotations


class IncompleteRun(Exception):
    """The step ran to its end and published its counts, but did not do all of its work: files not
    fully loaded, messages rejected or still pending, a sync refused by the mass-change guard. What it
    did do is kept (loaded rows, confirmed messages); the message says what was left and what to do.
    ``result`` is what the step would have returned (the pipeline's summary reads it)."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result
