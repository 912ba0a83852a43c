"""Destinations that receive Identify calls.

CleverTap Upload API, a Segment-compatible HTTP API, and a JSON-lines file.
"""

from ctsync.destinations.base import DeliveryResult, DeliveryStatus, Destination, OutboundMessage
from ctsync.destinations.clevertap import CleverTapUploadClient
from ctsync.destinations.config import build_destination
from ctsync.destinations.http import RetryPolicy
from ctsync.destinations.jsonl import JsonlFileDestination
from ctsync.destinations.segment import SegmentHttpClient

__all__ = [
    "CleverTapUploadClient",
    "DeliveryResult",
    "DeliveryStatus",
    "Destination",
    "JsonlFileDestination",
    "OutboundMessage",
    "RetryPolicy",
    "SegmentHttpClient",
    "build_destination",
]
