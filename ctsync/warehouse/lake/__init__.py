"""The lake: the loader's tables as date-partitioned Parquet under a lake root (a local folder or an
fsspec URL such as ``s3://bucket/lake``), its bookkeeping in a state database, registered in a Spark
catalog on request. See docs/lake.md."""

from ctsync.warehouse.lake.state import open_lake_target, refuse_lake_state
from ctsync.warehouse.lake.storage import PARTITION_COLUMN, Lake
from ctsync.warehouse.lake.target import LakeTarget

__all__ = ["PARTITION_COLUMN", "Lake", "LakeTarget", "open_lake_target", "refuse_lake_state"]
