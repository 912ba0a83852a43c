"""Apache Spark for the tests: a local Spark session in this process, its catalog under a temporary folder.

The spark tests need Java and the ``spark`` extra (pyspark, dbt-spark). Locally they are
skipped, saying what is missing; in CI (``CI`` set) a missing part fails them instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.models.conftest import built_sample  # noqa: F401  (the DuckDB build the Spark one is compared with)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def missing_parts() -> list[str]:
    """What the spark tests need and this machine lacks."""
    missing = []
    java_home = os.environ.get("JAVA_HOME")
    if shutil.which("java") is None and not (java_home and (Path(java_home) / "bin" / "java").exists()):
        missing.append("Java 17 or 21 (apt-get install openjdk-17-jre-headless)")
    for module, package in (("pyspark", "pyspark"), ("dbt.adapters.spark", "dbt-spark[session]")):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"{package} (pip install -c constraints.txt -e '.[spark]')")
    return missing


def require_spark() -> None:
    missing = missing_parts()
    if not missing:
        return
    message = "needs " + " and ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(f"{message}: CI installs them for the spark tests")
    pytest.skip(message)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    """A local Spark session (2 cores) whose warehouse folder and Derby metastore are temporary.

    dbt-spark's session method (the spark target of profiles.yml) runs its SQL on this same
    session: it takes the active one rather than starting another.
    """
    require_spark()
    from pyspark.sql import SparkSession

    root = tmp_path_factory.mktemp("spark")
    settings = {
        "CTSYNC_SPARK_MASTER": "local[2]",
        "CTSYNC_SPARK_WAREHOUSE": str(root / "spark-warehouse"),
        "CTSYNC_SPARK_METASTORE": str(root / "metastore_db"),
    }
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    # A few thousand rows per query and some 200 queries per build: planning and compiling are
    # most of the time, so whole-stage code generation, adaptive re-planning and the JIT's
    # second tier (C2) cost more than they save (a build takes ~90 s instead of ~150 s here).
    session = (
        SparkSession.builder.master("local[2]")
        .appName("ctsync-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.adaptive.enabled", "false")
        # A table's ~45 date folders are listed by the driver, not by a Spark job per query.
        .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "1000")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", settings["CTSYNC_SPARK_WAREHOUSE"])
        .config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            f"jdbc:derby:;databaseName={settings['CTSYNC_SPARK_METASTORE']};create=true",
        )
        .config(
            "spark.driver.extraJavaOptions",
            f"-Dderby.system.home={root} -XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        )
        .enableHiveSupport()
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
