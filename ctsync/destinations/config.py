"""Destination settings and the one factory that turns them into a Destination.

A destination entry of the settings file names its secrets (an environment variable with
``*_env``, or a Prefect Secret block with ``*_secret`` read through an injected resolver);
it never holds them. ``clevertap``, ``segment`` and ``jsonl`` also work from the
environment alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from ctsync.destinations.base import Destination
from ctsync.destinations.clevertap import (
    MAX_CONCURRENCY,
    MAX_RECORDS_PER_REQUEST,
    REGIONS,
    CleverTapUploadClient,
)
from ctsync.destinations.http import RetryPolicy, check_base_url
from ctsync.destinations.jsonl import JsonlFileDestination
from ctsync.destinations.segment import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    TARGET_BATCH_BYTES,
    SegmentHttpClient,
)
from ctsync.errors import CtsyncError
from ctsync.project import destination_settings

SecretResolver = Callable[[str], str]
"""Reads a secret by name (for example a Prefect Secret block); injected by the caller."""

BUILT_IN_TYPES = ("clevertap", "segment", "jsonl")
_LITERAL_SECRET_KEYS = {
    "passcode": "passcode",
    "write_key": "write_key",
    "writekey": "write_key",
}


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpDeliverySettings(_Settings):
    """Timeouts and retries shared by the HTTP destinations."""

    base_url: str | None = None
    timeout_seconds: float = Field(30.0, gt=0)
    max_attempts: int = Field(8, ge=1, le=50)
    retry_budget_seconds: float = Field(300.0, ge=0)
    backoff_initial_seconds: float = Field(0.5, ge=0)
    backoff_max_seconds: float = Field(60.0, ge=0)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_base_url(value)
        except CtsyncError as exc:
            raise ValueError(str(exc)) from None

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            initial_backoff=self.backoff_initial_seconds,
            max_backoff=self.backoff_max_seconds,
            max_elapsed=self.retry_budget_seconds,
        )


_ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_var_name(value: str) -> str:
    if not _ENV_VAR_NAME.fullmatch(value):
        raise ValueError("must be the name of an environment variable (letters, digits and _), not the secret itself")
    return value


EnvVarName = Annotated[str, AfterValidator(_env_var_name)]
"""The name of an environment variable (never the secret itself)."""


class CleverTapSettings(HttpDeliverySettings):
    type: Literal["clevertap"]
    account_id: str = Field(min_length=1)
    passcode_env: EnvVarName | None = None
    passcode_secret: str | None = None
    region: Literal["eu1", "in1", "us1", "sg1", "aps3", "mec1", "sk1"] | None = None
    concurrency: int = 3
    batch_size: int = Field(MAX_RECORDS_PER_REQUEST, ge=1, le=MAX_RECORDS_PER_REQUEST)

    @field_validator("region", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("concurrency")
    @classmethod
    def _concurrency(cls, value: int) -> int:
        if not 1 <= value <= MAX_CONCURRENCY:
            raise ValueError(
                f"must be between 1 and {MAX_CONCURRENCY}: CleverTap answers 429 beyond "
                f"{MAX_CONCURRENCY} requests in flight per account (3 is the safe default)"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> CleverTapSettings:
        _one_secret_source(self.passcode_env, self.passcode_secret, "passcode")
        if self.region is None and self.base_url is None:
            raise ValueError(
                f"set region to one of {', '.join(REGIONS)} (the subdomain of your CleverTap "
                "dashboard URL), or base_url"
            )
        return self


class SegmentSettings(HttpDeliverySettings):
    type: Literal["segment"]
    write_key_env: EnvVarName | None = None
    write_key_secret: str | None = None
    region: Literal["us", "eu"] = "us"
    concurrency: int = Field(4, ge=1, le=64)
    max_batch_bytes: int = Field(TARGET_BATCH_BYTES, ge=64 * 1024, le=MAX_BATCH_BYTES)
    max_batch_messages: int = Field(MAX_BATCH_MESSAGES, ge=1, le=MAX_BATCH_MESSAGES)

    @field_validator("region", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> SegmentSettings:
        _one_secret_source(self.write_key_env, self.write_key_secret, "write_key")
        return self


class JsonlSettings(_Settings):
    type: Literal["jsonl"]
    path: str = Field(min_length=1)
    chunk_size: int = Field(1000, ge=1)


DestinationSettings = Annotated[CleverTapSettings | SegmentSettings | JsonlSettings, Field(discriminator="type")]
_ADAPTER: TypeAdapter[CleverTapSettings | SegmentSettings | JsonlSettings] = TypeAdapter(DestinationSettings)

_ENV_FIELDS: dict[str, dict[str, str]] = {
    "clevertap": {
        "account_id": "CLEVERTAP_ACCOUNT_ID",
        "region": "CLEVERTAP_REGION",
        "base_url": "CLEVERTAP_BASE_URL",
    },
    "segment": {"region": "SEGMENT_REGION", "base_url": "SEGMENT_BASE_URL"},
    "jsonl": {"path": "CTSYNC_JSONL_PATH"},
}
_ENV_SECRETS = {
    "clevertap": ("passcode_env", "CLEVERTAP_PASSCODE"),
    "segment": ("write_key_env", "SEGMENT_WRITE_KEY"),
}


def build_destination(
    name: str,
    settings: Mapping[str, Any] | None,
    environ: Mapping[str, str],
    secret_resolver: SecretResolver | None = None,
) -> Destination:
    """The destination called ``name``, from its settings entry or, if None, the environment."""
    if settings is None:
        parsed = settings_from_environment(name, environ)
    else:
        parsed = parse_settings(name, _environment_first(name, settings, environ))
    return _build(name, parsed, environ, secret_resolver)


def _environment_first(name: str, settings: Mapping[str, Any], environ: Mapping[str, str]) -> Mapping[str, Any]:
    """A settings entry named like its built-in type (``jsonl``, ``clevertap``, ``segment``) with the
    environment variables of that type applied over it: the environment wins over the file, as it does
    for every other setting (``CTSYNC_JSONL_PATH`` redirects the ``jsonl`` destination of ctsync.yml)."""
    if settings.get("type") != name or name not in _ENV_FIELDS:
        return settings
    applied = dict(settings)
    for field, variable in _ENV_FIELDS[name].items():
        value = environ.get(variable, "").strip()
        if value:
            applied[field] = value
    return applied


def parse_settings(name: str, settings: Mapping[str, Any]) -> CleverTapSettings | SegmentSettings | JsonlSettings:
    """Validate one destination entry of the settings file."""
    where = f"destination {name!r}"
    for key in settings:
        literal = _LITERAL_SECRET_KEYS.get(str(key).lower())
        if literal is not None:
            raise CtsyncError(
                f"{where}: do not write the {literal} in the settings file. Set {literal}_env to "
                f"the name of an environment variable that holds it, or {literal}_secret to the "
                "name of a Prefect Secret block."
            )
    kind = settings.get("type")
    if kind not in BUILT_IN_TYPES:
        raise CtsyncError(f"{where}: set type to one of {', '.join(BUILT_IN_TYPES)} (got {kind!r})")
    try:
        return _ADAPTER.validate_python(dict(settings))
    except ValidationError as exc:
        raise CtsyncError(f"{where}: {_describe(exc, {})}") from None


def settings_from_environment(
    name: str, environ: Mapping[str, str]
) -> CleverTapSettings | SegmentSettings | JsonlSettings:
    """Settings of a built-in destination type configured from environment variables alone."""
    if name not in BUILT_IN_TYPES:
        raise CtsyncError(
            f"no destination named {name!r} in the settings file; add it there, or use one of "
            f"{', '.join(BUILT_IN_TYPES)} configured from environment variables"
        )
    fields = _ENV_FIELDS[name]
    raw: dict[str, Any] = {"type": name}
    for field, variable in fields.items():
        value = environ.get(variable, "").strip()
        if value:
            raw[field] = value
    missing = [variable for field, variable in fields.items() if field in _required(name, raw)]
    if name in _ENV_SECRETS:
        field, variable = _ENV_SECRETS[name]
        raw[field] = variable
        if not environ.get(variable, "").strip():
            missing.append(variable)
    if missing:
        listed = ", ".join(missing[:-1]) + (" and " if len(missing) > 1 else "") + missing[-1]
        raise CtsyncError(f"set {listed} to use --destination {name}")
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise CtsyncError(_describe(exc, fields)) from None


def _required(name: str, raw: Mapping[str, Any]) -> set[str]:
    """Fields still missing from an environment-only configuration."""
    needed = {"clevertap": {"account_id"}, "segment": set(), "jsonl": {"path"}}[name]
    if name == "clevertap" and "base_url" not in raw:
        needed = needed | {"region"}
    return {field for field in needed if field not in raw}


def _build(
    name: str,
    settings: CleverTapSettings | SegmentSettings | JsonlSettings,
    environ: Mapping[str, str],
    resolver: SecretResolver | None,
) -> Destination:
    if isinstance(settings, JsonlSettings):
        return JsonlFileDestination(settings.path, name=name, chunk_size=settings.chunk_size)
    if isinstance(settings, CleverTapSettings):
        passcode = _secret(name, "passcode", settings.passcode_env, settings.passcode_secret, environ, resolver)
        return CleverTapUploadClient(
            settings.account_id,
            passcode,
            region=settings.region,
            base_url=settings.base_url,
            name=name,
            concurrency=settings.concurrency,
            batch_size=settings.batch_size,
            timeout=settings.timeout_seconds,
            retry=settings.retry_policy(),
        )
    write_key = _secret(name, "write_key", settings.write_key_env, settings.write_key_secret, environ, resolver)
    return SegmentHttpClient(
        write_key,
        region=settings.region,
        base_url=settings.base_url,
        name=name,
        concurrency=settings.concurrency,
        max_batch_bytes=settings.max_batch_bytes,
        max_batch_messages=settings.max_batch_messages,
        timeout=settings.timeout_seconds,
        retry=settings.retry_policy(),
    )


def _secret(
    name: str,
    what: str,
    env_var: str | None,
    block: str | None,
    environ: Mapping[str, str],
    resolver: SecretResolver | None,
) -> SecretStr:
    """The secret named by ``*_env`` or ``*_secret``; CtsyncError saying what to set."""
    if env_var is not None:
        value = environ.get(env_var, "").strip()
        if not value:
            raise CtsyncError(f"destination {name!r}: set the environment variable {env_var} to the {what}")
        return SecretStr(value)
    assert block is not None  # the model checked that one of the two is set
    if resolver is None:
        raise CtsyncError(
            f"destination {name!r}: {what}_secret {block!r} names a Prefect Secret block, which "
            f"can only be read when running from a Prefect flow; use {what}_env instead"
        )
    try:
        value = resolver(block)
    except Exception as exc:
        raise CtsyncError(
            f"destination {name!r}: could not read the secret block {block!r} "
            f"({type(exc).__name__}); check that it exists"
        ) from None
    if not value:
        raise CtsyncError(f"destination {name!r}: the secret block {block!r} is empty")
    return SecretStr(value)


def _one_secret_source(env_var: str | None, block: str | None, what: str) -> None:
    if (env_var is None) == (block is None):
        raise ValueError(
            f"set exactly one of {what}_env (an environment variable holding the {what}) "
            f"or {what}_secret (a Prefect Secret block name)"
        )


def _describe(error: ValidationError, env_names: Mapping[str, str]) -> str:
    """Readable problems without input values (they could hold a secret pasted by mistake)."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        location = [str(part) for part in item["loc"] if part not in BUILT_IN_TYPES]
        message = item["msg"].removeprefix("Value error, ")
        if location and location[0] in env_names:
            problems.append(f"set {env_names[location[0]]} correctly: {message}")
        elif location:
            problems.append(f"{'.'.join(location)}: {message}")
        else:
            problems.append(message)
    return "; ".join(problems)


def open_destination(
    name: str,
    *,
    config_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    secret_resolver: SecretResolver | None = None,
) -> Destination:
    """The destination called ``name``: from the settings file, else from the environment alone."""
    env = os.environ if environ is None else environ
    return build_destination(name, destination_settings(name, config_path, env), env, secret_resolver)
