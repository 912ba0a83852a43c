"""``ctsync config validate`` checks the whole settings file at once; ``ctsync.schema.json`` is its
JSON Schema, current, and agrees with it on what is valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from ctsync.cli import app
from ctsync.config_check import SCHEMA_FILE, SCHEMA_MODELINE, settings_schema

REPOSITORY = Path(__file__).resolve().parents[1]
VALIDATOR = jsonschema.Draft202012Validator


def export(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "events",
        "nickname": "CleverTap_Prod",
        "location": "/data/exports",
        "data_type": "all_events",
        "frequency": {"recurring": {"every_hours": 6}},
    }
    entry.update(overrides)
    return entry


GOOD: dict[str, Any] = {
    "exports": [
        export(),
        export(name="june", data_type="user_profiles", frequency={"one_time": "previous_month"}),
        export(name="day", frequency={"one_time": {"day": "2026-11-02"}}, timezone="Asia/Kolkata"),
    ],
    "destinations": {
        "jsonl": {"type": "jsonl", "path": "identify.jsonl"},
        "clevertap-in": {"type": "clevertap", "account_id": "W9R-486-4W5Z", "passcode_env": "CT_PASS", "region": "in1"},
        "segment-eu": {"type": "segment", "write_key_secret": "segment-write-key", "region": "eu"},
    },
    "storage": {
        "s3": {"aws_credentials_block": "ctsync-aws", "options": {"client_kwargs": {"endpoint_url": "http://minio"}}},
        "gcs": {"options_block": "gcs-options"},
    },
}

# Each breaks one rule both the schema and `config validate` know.
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("unknown section", {**GOOD, "destination": {}}, "did you mean destinations?"),
    ("export without location", {"exports": [{k: v for k, v in export().items() if k != "location"}]}, "location"),
    ("every 2 hours", {"exports": [export(frequency={"recurring": {"every_hours": 2}})]}, "every 2 hours"),
    ("unknown export setting", {"exports": [export(bucket="x")]}, "bucket is not a setting"),
    ("unknown destination type", {"destinations": {"x": {"type": "kafka"}}}, "destination 'x'"),
    ("two storage blocks", {"storage": {"s3": {"aws_credentials_block": "a", "s3_bucket_block": "b"}}}, "one block"),
    ("unknown storage setting", {"storage": {"s3": {"key_block": "a"}}}, "key_block"),
]


def write(folder: Path, document: dict[str, Any]) -> Path:
    path = folder / "ctsync.yml"
    path.write_text(SCHEMA_MODELINE + "\n" + yaml.safe_dump(document, sort_keys=False))
    return path


def validate(path: Path, *args: str) -> Any:
    return CliRunner().invoke(
        app, ["config", "validate", "--config", str(path), "--warehouse", str(path.parent / "w.duckdb"), *args]
    )


def test_the_committed_schema_is_current() -> None:
    committed = json.loads((REPOSITORY / SCHEMA_FILE).read_text())
    assert committed == settings_schema(), "run `ctsync config schema --output ctsync.schema.json`"
    VALIDATOR.check_schema(committed)


def test_the_committed_settings_file_names_the_schema_and_is_valid(tmp_path: Path) -> None:
    text = (REPOSITORY / "ctsync.yml").read_text()
    assert text.splitlines()[0] == SCHEMA_MODELINE
    VALIDATOR(settings_schema()).validate(yaml.safe_load(text))
    result = validate(REPOSITORY / "ctsync.yml")
    assert result.exit_code == 0, result.output
    assert "no problems (2 export(s), 1 destination(s)" in result.stdout


def test_a_good_file(tmp_path: Path) -> None:
    VALIDATOR(settings_schema()).validate(GOOD)
    result = validate(write(tmp_path, GOOD), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["exports"] == ["events", "june", "day"]
    assert sorted(report["destinations"]) == ["clevertap-in", "jsonl", "segment-eu"]
    assert report["storage"] == ["gcs", "s3"]
    assert any("CT_PASS" in note for note in report["notes"])


@pytest.mark.parametrize(("case", "document", "expected"), BAD, ids=[case for case, _, _ in BAD])
def test_schema_and_validate_agree_on_a_problem(
    case: str, document: dict[str, Any], expected: str, tmp_path: Path
) -> None:
    errors = list(VALIDATOR(settings_schema()).iter_errors(document))
    assert errors, f"the schema accepts: {case}"
    result = validate(write(tmp_path, document))
    assert result.exit_code == 1, result.output
    assert expected in " ".join(result.stdout.split()), result.stdout


def test_validate_knows_more_than_the_schema(tmp_path: Path) -> None:
    """Rules across settings or against the warehouse are validate's alone (the schema allows these)."""
    document = {
        "exports": [export(region="eu")],
        "destinations": {"c": {"type": "clevertap", "account_id": "A"}},
    }
    VALIDATOR(settings_schema()).validate(document)
    result = validate(write(tmp_path, document))
    assert result.exit_code == 1
    text = " ".join(result.stdout.split())
    assert "differs from the workspace region us" in text and "set exactly one of passcode_env" in text


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    document = {
        "exports": [export(frequency={"recurring": {"every_hours": 2}})],
        "destinations": {"x": {"type": "kafka"}},
        "storage": {"s3": {"options": {"secret": "abc"}}},
        "extra": 1,
    }
    result = validate(write(tmp_path, document))
    assert result.exit_code == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("x ")]
    assert len(problems) == 4, result.stdout
    assert "storage.s3: options secret hold secrets" in result.stdout
    assert result.stdout.rstrip().endswith("4 problem(s)")


def test_a_missing_or_broken_file_is_one_line(tmp_path: Path) -> None:
    missing = validate(tmp_path / "nope.yml")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    broken = tmp_path / "ctsync.yml"
    broken.write_text("exports: [\n")
    result = validate(broken)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "cannot read the settings file" in result.stderr


def test_config_schema_prints_or_writes_it(tmp_path: Path) -> None:
    printed = CliRunner().invoke(app, ["config", "schema"])
    assert printed.exit_code == 0
    assert json.loads(printed.stdout) == settings_schema()
    target = tmp_path / SCHEMA_FILE
    written = CliRunner().invoke(app, ["config", "schema", "--output", str(target)])
    assert written.exit_code == 0 and json.loads(target.read_text()) == settings_schema()
