"""The whole job, in sequence (DuckDB has one writer): load, build, sync."""

from __future__ import annotations

from datetime import datetime

from prefect import flow

from flows.build import build_audiences
from flows.load import load_clevertap_exports
from flows.sync import sync_audiences


@flow(name="clevertap-engage-pipeline")
def clevertap_engage_pipeline(
    destination: str = "jsonl",
    export: str | None = None,
    as_of: datetime | None = None,
    dry_run: bool = False,
    warehouse: str | None = None,
    config: str | None = None,
) -> dict[str, dict[str, int]]:
    """Load due exports (or ``export``), rebuild audiences and traits, sync what changed."""
    loaded = load_clevertap_exports(export=export, config=config, warehouse=warehouse)
    built = build_audiences(as_of=as_of, warehouse=warehouse)
    synced = sync_audiences(destination=destination, dry_run=dry_run, warehouse=warehouse, config=config)
    return {"load": loaded, "build": built, "sync": synced}


if __name__ == "__main__":
    clevertap_engage_pipeline()
