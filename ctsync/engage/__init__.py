"""Engage sync: diff memberships and computed traits against what each destination confirmed,
store the Identify calls in an outbox, send them, and confirm only what was acknowledged."""

from ctsync.engage.diff import ENGAGE_SCHEMA, DiffCounts, compute_changes
from ctsync.engage.payloads import DEFAULT_SPACE_ID, computation_id, identify_payload
from ctsync.engage.run import ChangePreview, SyncSummary, sync_destination

__all__ = [
    "DEFAULT_SPACE_ID",
    "ENGAGE_SCHEMA",
    "ChangePreview",
    "DiffCounts",
    "SyncSummary",
    "computation_id",
    "compute_changes",
    "identify_payload",
    "sync_destination",
]
