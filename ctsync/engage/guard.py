"""The mass-change guard: a run that would take most of an audience's members out (or set most of a
trait's values to null) at the destination is refused before anything is written or sent.

An audience (trait) passes the limit when the people whose confirmed membership (non-null value)
the run would remove number more than ``share`` of the members (values) the destination has
confirmed, and at least ``floor`` people; or when the run would remove every one of them (a model
that selects nobody, the commonest broken build) and there were at least ``EMPTIED_FLOOR`` (or
``floor``, if lower). The defaults, 50% and 100 people, are set for each run with
``mass_change_share`` / ``mass_change_floor`` (``--mass-change-share``, ``--mass-change-floor``),
else ``CTSYNC_MASS_CHANGE_SHARE`` / ``CTSYNC_MASS_CHANGE_FLOOR``. An operator who has checked the
build confirms such a run with ``allow_mass_change`` (``--allow-mass-change``).

A retired audience or trait (its model deleted) is not a mass change: nothing is sent for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ctsync.engage.summary import ComputationCounts, SyncSummary
from ctsync.errors import CtsyncError

SHARE_ENV = "CTSYNC_MASS_CHANGE_SHARE"
FLOOR_ENV = "CTSYNC_MASS_CHANGE_FLOOR"
DEFAULT_SHARE = 0.5
DEFAULT_FLOOR = 100
EMPTIED_FLOOR = 10
"""An audience (trait) emptied of at least this many confirmed members (values) is a mass change
whatever ``floor`` says; smaller ones may empty."""


class MassChangeRefused(CtsyncError):
    """The run would exit (null) more than the limit of some audience's (trait's) confirmed members
    (values); nothing was written or sent. ``summary`` holds the run's counts; ``refused`` the
    audiences and traits past the limit."""

    def __init__(self, message: str, summary: SyncSummary) -> None:
        super().__init__(message)
        self.summary = summary

    @property
    def refused(self) -> list[ComputationCounts]:
        return self.summary.mass_changes


@dataclass(frozen=True)
class MassChangeGuard:
    share: float = DEFAULT_SHARE
    """A removal of more than this share of the confirmed members (values) is a mass change."""
    floor: int = DEFAULT_FLOOR
    """...when it removes at least this many people: smaller audiences churn freely."""
    allow: bool = False
    """The operator confirmed the run: a mass change is reported, not refused."""

    def passes_limit(self, counts: ComputationCounts) -> bool:
        confirmed = counts.confirmed or 0
        if confirmed == 0 or counts.removed <= self.share * confirmed:
            return False
        emptied = counts.removed == confirmed and confirmed >= min(self.floor, EMPTIED_FLOOR)
        return counts.removed >= self.floor or emptied

    def mark(self, computations: Sequence[ComputationCounts]) -> list[ComputationCounts]:
        """Flag the computations past the limit; return them."""
        for counts in computations:
            counts.mass_change = self.passes_limit(counts)
        return [counts for counts in computations if counts.mass_change]

    def verdict(self, destination: str, past: Sequence[ComputationCounts], *, dry_run: bool) -> str:
        """What the guard says about a run whose ``past`` computations pass the limit."""
        listed = "; ".join(f"{counts.label}: {counts.removal_text()}" for counts in past)
        if self.allow:
            return f"mass change allowed by the operator (allow_mass_change): {listed}"
        subject = f"a real sync to {destination!r} would be refused" if dry_run else f"sync to {destination!r} refused"
        return (
            f"{subject}: {listed}. The limit is {self.share:.0%} of an audience's confirmed members (of a "
            f"trait's confirmed values) when at least {self.floor:,} people are affected, or all of them from "
            f"{min(self.floor, EMPTIED_FLOOR):,} up."
            + ("" if dry_run else " Nothing was written or sent.")
            + " If the build is wrong, fix it and run `ctsync build` again; to see every change, run "
            f"`ctsync sync --destination {destination} --dry-run --output changes.csv`. If the change is "
            f"right, run `ctsync sync --destination {destination} --allow-mass-change` (Prefect flows: "
            "allow_mass_change=true)."
        )


def resolve_guard(
    *,
    share: float | None,
    floor: int | None,
    allow: bool,
    environ: Mapping[str, str],
) -> MassChangeGuard:
    """The guard of one run: ``share`` / ``floor``, else their environment variables, else the defaults."""
    if share is None:
        text = environ.get(SHARE_ENV, "").strip()
        try:
            share = float(text) if text else DEFAULT_SHARE
        except ValueError:
            raise CtsyncError(f"{SHARE_ENV} must be a share between 0 and 1 such as 0.5, not {text!r}") from None
    if floor is None:
        text = environ.get(FLOOR_ENV, "").strip()
        try:
            floor = int(text) if text else DEFAULT_FLOOR
        except ValueError:
            raise CtsyncError(f"{FLOOR_ENV} must be a whole number of people, not {text!r}") from None
    if not 0 < share <= 1:
        raise CtsyncError(f"the mass-change share must be above 0 and at most 1 (1 turns the guard off), not {share}")
    if floor < 0:
        raise CtsyncError(f"the mass-change floor must be 0 or more people, not {floor}")
    return MassChangeGuard(share=share, floor=floor, allow=allow)
