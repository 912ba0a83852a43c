"""Apache Spark for the tests: the session's sample built on a local Spark catalog under a temporary folder.

Once per session the sample's CleverTap tables (of the DuckDB build ``built_sample``) are written as
date-partitioned Parquet, registered in a Spark catalog with an embedded Derby metastore, and built
there by ``ctsync build --target spark`` (its library call). Derby admits one process at a time, so the
registration and the build run in child processes, one after the other; then the test process opens the
same catalog (``spark``) to compare and to sync.

The spark tests need Java and the ``spark`` extra (pyspark, dbt-spark). Locally they are skipped,
saying what is missing; in CI (``CI`` set) a missing part fails them instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ctsync.build import BuildResult, build_models
from tests.models.conftest import (  # noqa: F401  (built_sample: the DuckDB build the Spark one is compared with)
    AS_OF,
    PROJECT,
    SCHEMA,
    BuiltSample,
    built_sample,
    copy_project,
)
from tests.spark.catalog import TUNING, export_to_parquet, java_options, submit_args

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


def spark_environment(root: Path) -> dict[str, str]:
    """``CTSYNC_SPARK_*`` (what profiles.yml's spark target reads) for a catalog under ``root``, and the
    tests' Spark settings for any Spark a child process starts."""
    return {
        "CTSYNC_SPARK_MASTER": "local[2]",
        "CTSYNC_SPARK_WAREHOUSE": str(root / "spark-warehouse"),
        "CTSYNC_SPARK_METASTORE": str(root / "metastore_db"),
        "PYSPARK_SUBMIT_ARGS": submit_args(root),
        "DO_NOT_TRACK": "1",
    }


@dataclass
class SparkCatalog:
    root: Path
    environment: dict[str, str]
    build: BuildResult
    """``ctsync build --target spark`` of the sample."""
    log: list[str]
    seconds: dict[str, float]
    """How long registering and building took (the Spark tests' share of CI's time)."""


@pytest.fixture(scope="session")
def spark_catalog(built_sample: BuiltSample, tmp_path_factory: pytest.TempPathFactory) -> SparkCatalog:  # noqa: F811
    """The sample registered in a local Spark catalog and built there by ``build_models(target="spark")``."""
    require_spark()
    root = tmp_path_factory.mktemp("spark")
    environment = spark_environment(root)
    lake = root / "lake" / SCHEMA
    tables = export_to_parquet(built_sample.warehouse, SCHEMA, lake)
    assert {"_loads", "tracks", "identifies", "charged", "app_launched"} <= tables.keys()
    log: list[str] = []
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        subprocess.run(
            [sys.executable, "-m", "tests.spark.catalog", SCHEMA, str(lake), json.dumps(tables)],
            cwd=PROJECT,
            check=True,
            timeout=300,
        )
        seconds["register"] = time.perf_counter() - started
        project = copy_project(root / "project")  # dbt's target/ and logs/ stay out of the work tree
        build = build_models(
            target="spark",
            as_of=AS_OF,
            project=project,
            on_log=lambda level, message: log.append(f"{level}: {message}"),
        )
    seconds["build"] = time.perf_counter() - started - seconds["register"]
    assert build.success, build.failures or log[-40:]
    return SparkCatalog(root, environment, build, log, seconds)


@pytest.fixture(scope="session")
def spark(spark_catalog: SparkCatalog) -> Iterator[SparkSession]:
    """A local Spark session (2 cores) on the catalog the sample was built in, in the test process.

    dbt-spark's session method (the spark target of profiles.yml) and ``--engage-source spark`` run on
    this same session when they run in this process: they take the active one rather than starting another.
    """
    from pyspark.sql import SparkSession

    settings = {key: value for key, value in spark_catalog.environment.items() if key.startswith("CTSYNC_SPARK_")}
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("ctsync-tests")
        .config("spark.sql.warehouse.dir", settings["CTSYNC_SPARK_WAREHOUSE"])
        .config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            f"jdbc:derby:;databaseName={settings['CTSYNC_SPARK_METASTORE']};create=true",
        )
        .config("spark.driver.extraJavaOptions", java_options(spark_catalog.root))
    )
    for key, value in TUNING.items():
        builder = builder.config(key, value)
    session = builder.enableHiveSupport().getOrCreate()
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
