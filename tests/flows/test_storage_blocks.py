"""Object-storage credentials from Prefect blocks (prefect-aws ``AwsCredentials`` and ``S3Bucket``, a
Secret block of fsspec options), named in ``storage:`` of ctsync.yml: used by the load flow and by
the CLI when a Prefect API is configured. Against Prefect's test server and a real S3-compatible
server (moto) that no credential in the environment reaches."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pytest
import yaml
from prefect.blocks.system import Secret
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters
from typer.testing import CliRunner

from ctsync.cli import app
from ctsync.exports.sample import write_sample_export
from ctsync.prefect_api import cli_read_secret
from flows.load import load_clevertap_exports
from tests.warehouse.test_object_storage import s3_endpoint  # noqa: F401  (a fixture)

BUCKET = "ctsync-blocks"
NO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": None,
    "AWS_SECRET_ACCESS_KEY": None,
    "AWS_SESSION_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_ENDPOINT_URL": None,
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture
def bucket(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:  # noqa: F811
    """s3://ctsync-blocks/exports/ holding a sample export; the environment holds no AWS credentials."""
    import fsspec.config
    import s3fs

    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    )
    client.create_bucket(Bucket=BUCKET)
    export = tmp_path / "export"
    write_sample_export(export, events=200, users=20, seed=5)
    for path in sorted(export.iterdir()):
        client.upload_file(str(path), BUCKET, f"exports/{path.name}")
    for name, value in NO_CREDENTIALS.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    saved = dict(fsspec.config.conf)
    yield f"s3://{BUCKET}/exports/"
    fsspec.config.conf.clear()
    fsspec.config.conf.update(saved)
    s3fs.S3FileSystem.clear_instance_cache()
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def settings(folder: Path, location: str, storage: dict[str, Any]) -> Path:
    path = folder / "ctsync.yml"
    document = {
        "exports": [
            {
                "name": "events",
                "nickname": "CleverTap_Prod",
                "location": location,
                "data_type": "all_events",
                "frequency": {"recurring": {"every_hours": 6}},
            }
        ],
        "storage": storage,
    }
    path.write_text(yaml.safe_dump(document))
    return path


def events_loaded(warehouse: Path) -> int:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return int(con.execute("select count(*) from clevertap_prod.tracks").fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


def aws_credentials(endpoint: str) -> AwsCredentials:
    return AwsCredentials(
        aws_access_key_id="block-key",
        aws_secret_access_key="block-secret",
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint),
    )


def test_without_a_block_the_load_has_no_credentials(bucket: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["load", bucket, "--nickname", "CleverTap_Prod", "--warehouse", str(tmp_path / "w.duckdb")]
    )
    assert result.exit_code == 2
    assert "Unable to locate credentials" in result.stderr and "storage: section" in result.stderr


def test_the_load_flow_reads_an_aws_credentials_block(bucket: str, s3_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    aws_credentials(s3_endpoint).save("ctsync-aws", overwrite=True)
    config = settings(tmp_path, bucket, {"s3": {"aws_credentials_block": "ctsync-aws"}})
    warehouse = tmp_path / "w.duckdb"

    counts = load_clevertap_exports(export="events", config=str(config), warehouse=str(warehouse))

    assert counts["exports failed"] == 0 and counts["files not loaded"] == 0 and counts["files"] > 0
    assert events_loaded(warehouse) == 200


def test_the_cli_reads_an_s3_bucket_block_and_its_credentials(bucket: str, s3_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    credentials = aws_credentials(s3_endpoint)
    credentials.save("ctsync-aws-nested", overwrite=True)
    S3Bucket(bucket_name=BUCKET, credentials=credentials).save("ctsync-exports", overwrite=True)
    config = settings(tmp_path, bucket, {"s3": {"s3_bucket_block": "ctsync-exports"}})
    warehouse = tmp_path / "w.duckdb"

    result = CliRunner().invoke(
        app,
        ["load", bucket, "--nickname", "CleverTap_Prod", "--warehouse", str(warehouse)],
        env={"CTSYNC_CONFIG": str(config)},
    )

    assert result.exit_code == 0, result.output
    assert events_loaded(warehouse) == 200


def test_any_fsspec_options_from_a_secret_block(bucket: str, s3_endpoint: str, tmp_path: Path) -> None:  # noqa: F811
    options = {"key": "secret-key", "secret": "secret-secret", "client_kwargs": {"region_name": "us-east-1"}}
    Secret(value=options).save("s3-options", overwrite=True)
    storage = {"s3": {"options_block": "s3-options", "options": {"client_kwargs": {"endpoint_url": s3_endpoint}}}}
    config = settings(tmp_path, bucket, storage)
    warehouse = tmp_path / "w.duckdb"

    result = CliRunner().invoke(
        app,
        ["exports", "run", "events", "--config", str(config), "--warehouse", str(warehouse)],
    )

    assert result.exit_code == 0, result.output
    assert events_loaded(warehouse) == 200


def test_a_secret_block_from_the_cli() -> None:
    Secret(value="write-key-from-a-block").save("segment-write-key", overwrite=True)
    assert cli_read_secret("segment-write-key") == "write-key-from-a-block"


def test_a_block_named_without_a_prefect_api_is_one_line(tmp_path: Path) -> None:
    config = settings(tmp_path, "s3://somewhere/exports/", {"s3": {"aws_credentials_block": "ctsync-aws"}})
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    environment |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "CTSYNC_CONFIG": str(config)}
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "ctsync"), "load", "s3://somewhere/exports/", "--nickname", "x"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and "no Prefect API is configured" in completed.stderr
