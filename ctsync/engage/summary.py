"""What a sync run did: its totals (:class:`SyncSummary`) and its counts per audience and trait
(:class:`ComputationCounts`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ChangePreview:
    change: str
    computation_class: str
    computation_key: str
    user_id: str | None
    anonymous_id: str | None
    value: str
    resend: bool
    """An earlier message is sent again (same messageId) rather than a new one."""


@dataclass
class ComputationCounts:
    """One audience's or trait's share of a run."""

    computation_class: str
    """``audience`` or ``trait``."""
    computation_key: str
    entered: int = 0
    exited: int = 0
    changed: int = 0
    """Trait values set or changed, set to null included."""
    nulled: int = 0
    """Of ``changed``: values set to null (the person no longer has one)."""
    removed: int = 0
    """Exits (values set to null) of people whose membership (value) the destination had confirmed."""
    confirmed: int | None = None
    """Members (people with a value) the destination had confirmed before the run; counted only
    for computations with removals, else None."""
    sent: int = 0
    rejected: int = 0
    failed: int = 0
    """Handed over in this run without an answer (timeout, 5xx after retries): still pending."""
    pending: int = 0
    """Messages still unconfirmed after the run (retried by the next one)."""
    mass_change: bool = False
    """The removals pass the mass-change limit (:mod:`ctsync.engage.guard`)."""

    @property
    def label(self) -> str:
        return f"{self.computation_class} {self.computation_key}"

    @property
    def changes(self) -> int:
        return self.entered + self.exited + self.changed

    def removal_text(self) -> str:
        """``950 of 1,000 confirmed members would exit (95%)``, for messages."""
        confirmed = self.confirmed or 0
        share = f" ({self.removed / confirmed:.0%})" if confirmed else ""
        if self.computation_class == "audience":
            return f"{self.removed:,} of {confirmed:,} confirmed members would exit{share}"
        return f"{self.removed:,} of {confirmed:,} confirmed values would be set to null{share}"

    def as_row(self) -> dict[str, object]:
        """The counts as one row of a table (artifacts, reports)."""
        return {
            "class": self.computation_class,
            "key": self.computation_key,
            "entered": self.entered,
            "exited": self.exited,
            "changed": self.changed,
            "set to null": self.nulled,
            "sent": self.sent,
            "rejected": self.rejected,
            "failed": self.failed,
            "pending": self.pending,
            "mass change": "yes" if self.mass_change else "",
        }


@dataclass
class SyncSummary:
    run_id: str
    destination: str
    destination_kind: str
    dry_run: bool
    status: str = "running"
    """``succeeded``; ``incomplete`` when something was rejected or is still pending; ``refused`` by
    the mass-change guard; ``failed``."""
    entered: int = 0
    exited: int = 0
    traits_changed: int = 0
    sent: int = 0
    rejected: int = 0
    retried: int = 0
    failed: int = 0
    superseded: int = 0
    pending: int = 0
    """Messages still unconfirmed after the run (retried by the next one)."""
    retired_audiences: list[str] = field(default_factory=list)
    retired_traits: list[str] = field(default_factory=list)
    diff_seconds: float = 0.0
    """Diff plus outbox write."""
    send_seconds: float = 0.0
    rejections: list[tuple[str | None, str | None, int]] = field(default_factory=list)
    """The most frequent (code, reason, count) of rejected and failed messages."""
    preview: list[ChangePreview] = field(default_factory=list)
    """Dry runs: a sample of what would be sent."""
    stopped_early: str | None = None
    """Why sending stopped before every pending message was tried, if it did."""
    pruned: int = 0
    """Messages older than the retention (``keep_sent_days``) deleted from the outbox, no longer needed."""
    computations: list[ComputationCounts] = field(default_factory=list)
    """Counts per audience and trait that changed or has messages waiting, audiences first, by key."""
    mass_change: str | None = None
    """The mass-change guard's verdict when an audience or trait passed its limit: why a run is (or,
    in a dry run, would be) refused, or that the operator allowed it."""
    output: str | None = None
    """Dry runs with an output file: where the full diff was written."""
    engage_source: str | None = None
    """Where the engage relations were read from, when not the warehouse (``--engage-source``)."""
    engage_rows: dict[str, int] = field(default_factory=dict)
    """Rows read from the engage source, per relation."""
    engage_read_seconds: float = 0.0
    values_left_out: int = 0
    """Values the destination cannot take (a gender other than M/F, a birthday that is no date),
    left out of messages that were sent without them."""
    left_out_reasons: list[tuple[str, int]] = field(default_factory=list)
    """The most frequent (reason, count) of ``values_left_out``."""

    @property
    def changes(self) -> int:
        return self.entered + self.exited + self.traits_changed

    @property
    def send_rate(self) -> float:
        return self.sent / self.send_seconds if self.send_seconds > 0 else 0.0

    @property
    def mass_changes(self) -> list[ComputationCounts]:
        """The audiences and traits past the mass-change limit."""
        return [counts for counts in self.computations if counts.mass_change]

    def counts(self) -> dict[str, int]:
        """The run's totals by name (artifacts, flow results)."""
        return {
            "entered": self.entered,
            "exited": self.exited,
            "traits changed": self.traits_changed,
            "sent": self.sent,
            "rejected": self.rejected,
            "retried": self.retried,
            "failed": self.failed,
            "pending": self.pending,
            "pruned from the outbox": self.pruned,
            "values left out": self.values_left_out,
        }


COUNTERS = (
    "entered",
    "exited",
    "traits_changed",
    "sent",
    "rejected",
    "retried",
    "failed",
    "superseded",
    "pending",
    "retired_audiences",
    "retired_traits",
    "pruned",
    "values_left_out",
)
"""The ``sync_runs`` columns a summary fills."""


def counter_values(summary: SyncSummary) -> dict[str, int]:
    values = {name: getattr(summary, name) for name in COUNTERS}
    values["retired_audiences"] = len(summary.retired_audiences)
    values["retired_traits"] = len(summary.retired_traits)
    return values
