"""Publishing each run's counts as a Prefect table artifact (visible on the run's page)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from prefect.artifacts import create_table_artifact


def publish_counts(key: str, title: str, counts: Mapping[str, object]) -> None:
    """One artifact per run; ``key`` groups runs of the same kind in the UI."""
    safe_key = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")
    rows = [{"count": name, "value": value} for name, value in counts.items()]
    create_table_artifact(key=safe_key, table=rows, description=title)
