"""Object-storage credentials from the ``storage:`` section of ``ctsync.yml``, as fsspec options.

Without the section, fsspec finds credentials in the environment as usual (``AWS_*``, a
profile, an instance role). With it, each protocol's options come from a Prefect block
(prefect-aws ``AwsCredentials`` or ``S3Bucket``, or a ``Secret`` block holding any fsspec
options as a JSON mapping) and/or non-secret options written in the file::

    storage:
      s3:
        aws_credentials_block: ctsync-aws     # or s3_bucket_block: exports-bucket
        options: {client_kwargs: {endpoint_url: "http://minio:9000"}}
      gcs:
        options_block: gcs-storage-options    # a Secret block: {"token": ..., "project": ...}

Blocks are read through an injected :data:`BlockReader` (the Prefect API), so this module
never imports Prefect. The options are installed as fsspec's defaults for the protocol, so
every filesystem ctsync opens for it uses them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ctsync.errors import CtsyncError
from ctsync.project import read_settings_document

BlockReader = Callable[[str, str], Mapping[str, Any]]
"""(block type slug, block name) -> the block's data, secrets revealed."""

AWS_CREDENTIALS = "aws-credentials"
S3_BUCKET = "s3-bucket"
SECRET_BLOCK = "secret"
SECRET_OPTION_NAMES = ("key", "secret", "token", "password", "credentials", "client_secret", "account_key", "sas_token")
"""Options that hold secrets: never written literally in ctsync.yml (name a block instead)."""


class StorageEntry(BaseModel):
    """Where one protocol's options come from."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "not": {
                "anyOf": [
                    {"required": ["aws_credentials_block", "s3_bucket_block"]},
                    {"required": ["aws_credentials_block", "options_block"]},
                    {"required": ["s3_bucket_block", "options_block"]},
                ]
            }
        },
    )

    aws_credentials_block: str | None = Field(
        default=None, description="A prefect-aws AwsCredentials block: keys, session token, region, endpoint."
    )
    s3_bucket_block: str | None = Field(
        default=None, description="A prefect-aws S3Bucket block: the credentials it holds."
    )
    options_block: str | None = Field(
        default=None, description="A Prefect Secret block whose value is a JSON mapping of fsspec options."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options written here (no secrets: name a block for those)."
    )

    @model_validator(mode="after")
    def _one_block(self) -> StorageEntry:
        named = [name for name in ("aws_credentials_block", "s3_bucket_block", "options_block") if getattr(self, name)]
        if len(named) > 1:
            raise ValueError(f"name one block, not {' and '.join(named)}")
        secrets = sorted(key for key in self.options if key.lower() in SECRET_OPTION_NAMES)
        if secrets:
            raise ValueError(
                f"options {', '.join(secrets)} hold secrets: keep them in a Prefect block (options_block) "
                "or in the environment, never in ctsync.yml"
            )
        return self

    @property
    def block(self) -> tuple[str, str] | None:
        """(block type slug, name) of the block this entry names, if any."""
        if self.aws_credentials_block:
            return AWS_CREDENTIALS, self.aws_credentials_block
        if self.s3_bucket_block:
            return S3_BUCKET, self.s3_bucket_block
        if self.options_block:
            return SECRET_BLOCK, self.options_block
        return None


@dataclass(frozen=True)
class StorageSettings:
    entries: dict[str, StorageEntry]

    @property
    def blocks(self) -> list[tuple[str, str]]:
        return [entry.block for entry in self.entries.values() if entry.block is not None]


def parse_storage(section: Any, where: str = "storage") -> tuple[StorageSettings, list[str]]:
    """The ``storage:`` section and every problem in it (protocol names, keys, secrets written literally)."""
    if section is None:
        return StorageSettings({}), []
    if not isinstance(section, Mapping):
        return StorageSettings({}), [f"{where}: must map protocols (s3, gcs, abfs, ...) to their settings"]
    entries: dict[str, StorageEntry] = {}
    problems: list[str] = []
    for protocol, raw in section.items():
        label = f"{where}.{protocol}"
        if not isinstance(protocol, str) or not protocol.isidentifier() or "://" in protocol:
            problems.append(f"{label}: name the protocol without :// (s3, gcs, abfs, ...)")
            continue
        if not isinstance(raw, Mapping):
            problems.append(
                f"{label}: must be a mapping (aws_credentials_block, s3_bucket_block, options_block, options)"
            )
            continue
        try:
            entries[protocol] = StorageEntry.model_validate(dict(raw))
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                place = ".".join(str(part) for part in error["loc"])
                message = str(error["msg"]).removeprefix("Value error, ")
                if error["type"] == "extra_forbidden":
                    message = "is not a setting (aws_credentials_block, s3_bucket_block, options_block, options)"
                problems.append(f"{label}{'.' + place if place else ''}: {message}")
    return StorageSettings(entries), problems


def storage_options(protocol: str, entry: StorageEntry, read_block: BlockReader | None) -> dict[str, Any]:
    """The fsspec options for one protocol: the block's, then the literal ``options`` on top."""
    options: dict[str, Any] = {}
    if entry.block is not None:
        slug, name = entry.block
        if read_block is None:
            raise CtsyncError(
                f"storage.{protocol} names the Prefect block {name!r}, but no Prefect API is configured: "
                "set PREFECT_API_URL (or log in to Prefect Cloud), or put the credentials in the environment"
            )
        if slug == AWS_CREDENTIALS:
            options = s3fs_options(read_block(slug, name))
        elif slug == S3_BUCKET:
            bucket = read_block(slug, name)
            credentials = bucket.get("credentials")
            options = s3fs_options(credentials if isinstance(credentials, Mapping) else {})
        else:
            options = _options_from_value(read_block(slug, name).get("value"), name)
    return _merge(options, entry.options)


def s3fs_options(credentials: Mapping[str, Any]) -> dict[str, Any]:
    """prefect-aws ``AwsCredentials`` data as s3fs options."""
    options: dict[str, Any] = {}
    for field, option in (
        ("aws_access_key_id", "key"),
        ("aws_secret_access_key", "secret"),
        ("aws_session_token", "token"),
        ("profile_name", "profile"),
    ):
        if credentials.get(field):
            options[option] = credentials[field]
    client_kwargs: dict[str, Any] = {}
    if credentials.get("region_name"):
        client_kwargs["region_name"] = credentials["region_name"]
    parameters = credentials.get("aws_client_parameters") or {}
    if isinstance(parameters, Mapping):
        if parameters.get("endpoint_url"):
            client_kwargs["endpoint_url"] = parameters["endpoint_url"]
        if parameters.get("verify") is False:
            client_kwargs["verify"] = False
        if parameters.get("use_ssl") is False:
            options["use_ssl"] = False
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options


def _options_from_value(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise CtsyncError(f"the Prefect block {name!r} must hold a JSON mapping of fsspec options") from None
    if not isinstance(value, Mapping):
        raise CtsyncError(
            f"the Prefect block {name!r} must hold a mapping of fsspec options, not {type(value).__name__}"
        )
    return dict(value)


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_storage_settings(config_path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> StorageSettings:
    """The ``storage:`` section of the settings file (empty without a file or section); CtsyncError on a problem.

    A missing settings file is left for the command that needs it to report."""
    path, document = read_settings_document(config_path, environ, named_must_exist=False)
    settings, problems = parse_storage((document or {}).get("storage"))
    if problems:
        raise CtsyncError(f"{path}: " + "; ".join(problems))
    return settings


def configure_object_storage(settings: StorageSettings, read_block: BlockReader | None) -> list[str]:
    """Install each protocol's options as fsspec's defaults; the protocols configured."""
    import fsspec.config

    for protocol, entry in settings.entries.items():
        fsspec.config.conf[protocol] = storage_options(protocol, entry, read_block)
    return sorted(settings.entries)
