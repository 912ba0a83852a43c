"""Loading from object storage, against a real S3-compatible server on 127.0.0.1 (moto_server)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ctsync.exports.sample import write_sample_export
from ctsync.warehouse.loader import LoadOptions, load_export_files
from tests.warehouse.conftest import query
from tests.warehouse.test_loader import SCHEMA, count_lines_by_event

BUCKET = "clevertap-exports"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = _free_port()
    executable = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    process = subprocess.Popen(
        [executable, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError("moto_server did not start")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    import boto3
    import s3fs

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)
    s3fs.S3FileSystem.clear_instance_cache()


def upload(client: object, folder: Path, prefix: str) -> None:
    for path in sorted(folder.iterdir()):
        client.upload_file(str(path), BUCKET, f"{prefix}/{path.name}")  # type: ignore[attr-defined]


def test_loads_from_s3_and_reads_only_new_files(tmp_path: Path, warehouse: str, s3: object) -> None:
    first = tmp_path / "first"
    write_sample_export(first, events=1500, users=100, seed=3, end=datetime(2026, 11, 1, tzinfo=UTC))
    upload(s3, first, "exports/2026-11-01")
    summary = load_export_files(
        [f"s3://{BUCKET}/exports/"], LoadOptions(nickname="CleverTap_Prod"), warehouse=warehouse
    )
    assert not summary.failed
    expected = count_lines_by_event(first)
    assert query(warehouse, f"select count(*) from {SCHEMA}.tracks")[0][0] == sum(expected.values())
    assert query(warehouse, f"select count(*) from {SCHEMA}.identifies")[0][0] == 100
    files = query(warehouse, f"select file from {SCHEMA}._loads where status = 'loaded' order by 1 limit 1")[0][0]
    assert files.startswith(f"s3://{BUCKET}/exports/2026-11-01/")

    second = tmp_path / "second"
    write_sample_export(
        second, events=500, users=50, seed=4, end=datetime(2026, 11, 2, tzinfo=UTC), request_id="1700000002"
    )
    upload(s3, second, "exports/2026-11-02")
    again = load_export_files([f"s3://{BUCKET}/exports/"], LoadOptions(nickname="CleverTap_Prod"), warehouse=warehouse)
    new_names = {path.name for path in second.iterdir()}
    loaded = {result.file.name for result in again.files if result.status == "loaded"}
    assert loaded == new_names  # the files of the first export were not read again
    unchanged = [r for r in again.files if r.status == "skipped"]
    assert unchanged and all(r.error == "already loaded (unchanged)" for r in unchanged)
    total = sum(expected.values()) + sum(count_lines_by_event(second).values())
    assert query(warehouse, f"select count(*) from {SCHEMA}.tracks")[0][0] == total


def test_a_missing_prefix_is_a_clear_error(warehouse: str, s3: object) -> None:
    from ctsync.errors import CtsyncError

    with pytest.raises(CtsyncError, match="matches no file"):
        load_export_files([f"s3://{BUCKET}/nothing-here/"], LoadOptions(nickname="CleverTap_Prod"), warehouse=warehouse)
