"""ctsync: CleverTap exports -> Segment-style warehouse tables -> dbt audiences -> Identify sync."""

__version__ = "0.1.0"
