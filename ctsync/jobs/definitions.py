"""Export jobs: the ``exports:`` section of the project settings file, validated as CleverTap does.

Each job says what to load (data type, identifier priority), from where (location), into
which source (nickname, region, timezone) and when (one time, or recurring every 4 to 24
hours). Every problem names the job and the field and says what is allowed; the whole file
is checked at once so a user sees every problem in one go.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ctsync.errors import CtsyncError
from ctsync.exports.catalog import EventCatalog
from ctsync.naming import NamingError, schema_name

DataType = Literal["all_system_events", "selected_events", "engagement_events", "user_profiles", "all_events"]
DATA_TYPES: tuple[str, ...] = get_args(DataType)
UserIdField = Literal["identity", "email", "phone"]
USER_ID_FIELDS: tuple[str, ...] = get_args(UserIdField)
MonthPreset = Literal["previous_month", "current_month"]
MONTH_PRESETS: tuple[str, ...] = get_args(MonthPreset)

MIN_EVERY_HOURS = 4
MAX_EVERY_HOURS = 24
ONE_TIME_MAX_DAYS = 60
"""A one-time export covers at most the last 60 days (CleverTap's limit)."""

FREQUENCY_FORMS = (
    "{one_time: {day: YYYY-MM-DD}}, {one_time: {from: YYYY-MM-DD, to: YYYY-MM-DD}}, "
    "{one_time: previous_month}, {one_time: current_month} or "
    f"{{recurring: {{every_hours: N}}}} with N from {MIN_EVERY_HOURS} to {MAX_EVERY_HOURS}"
)
_HINTS = {
    "name": "a unique name for the export, e.g. daily-events",
    "nickname": "the source nickname (its schema holds the tables), e.g. CleverTap_Prod",
    "location": "the folder, glob or URL of the export files, e.g. s3://bucket/clevertap/events/",
    "data_type": "one of " + ", ".join(DATA_TYPES),
    "frequency": FREQUENCY_FORMS,
    "anonymous_id_field": "a profile field, e.g. objectId",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _problem(message: str) -> PydanticCustomError:
    """A validation error whose message is shown as written (it names the field itself)."""
    return PydanticCustomError("ctsync", message)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OneTime(_Model):
    """One day, an inclusive date range, or a month preset (resolved when the export is created)."""

    preset: MonthPreset | None = None
    day: date | None = None
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None

    def window(self, today: date) -> tuple[date, date]:
        """The local dates this export covers, given today's date in the export's timezone."""
        if self.preset == "current_month":
            return today.replace(day=1), today
        if self.preset == "previous_month":
            last = today.replace(day=1) - timedelta(days=1)
            return last.replace(day=1), last
        if self.day is not None:
            return self.day, self.day
        assert self.from_ is not None and self.to is not None  # checked by Frequency
        return self.from_, self.to

    def describe(self) -> str:
        if self.preset is not None:
            return "one-time " + self.preset.replace("_", " ")
        if self.day is not None:
            return f"one-time {self.day.isoformat()}"
        return f"one-time {self.from_} to {self.to}"

    def definition(self) -> str | dict[str, str]:
        if self.preset is not None:
            return self.preset
        if self.day is not None:
            return {"day": self.day.isoformat()}
        return {"from": str(self.from_), "to": str(self.to)}


class Recurring(_Model):
    every_hours: int


class Frequency(_Model):
    """Exactly one of ``one_time`` and ``recurring``."""

    one_time: OneTime | None = None
    recurring: Recurring | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        return _parse_frequency(value)

    @property
    def is_one_time(self) -> bool:
        return self.one_time is not None

    @property
    def kind(self) -> Literal["one-time", "recurring"]:
        return "one-time" if self.one_time is not None else "recurring"

    @property
    def every_hours(self) -> int | None:
        return self.recurring.every_hours if self.recurring is not None else None

    def describe(self) -> str:
        if self.one_time is not None:
            return self.one_time.describe()
        assert self.recurring is not None
        return f"every {self.recurring.every_hours} h"

    def definition(self) -> dict[str, Any]:
        if self.one_time is not None:
            return {"one_time": self.one_time.definition()}
        assert self.recurring is not None
        return {"recurring": {"every_hours": self.recurring.every_hours}}


class ExportJob(_Model):
    """One export as the settings file describes it."""

    name: str
    nickname: str
    region: Literal["us", "eu"] = "us"
    timezone: str = "UTC"
    location: str
    data_type: DataType
    events: tuple[str, ...] | None = None
    user_id_fields: tuple[UserIdField, ...] = ("identity", "email", "phone")
    anonymous_id_field: str = "objectId"
    frequency: Frequency

    @field_validator("name", "nickname", "location", "anonymous_id_field", mode="before")
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> Any:
        field = info.field_name
        if not isinstance(value, str) or not value.strip():
            hint = _HINTS[str(field)]
            raise _problem(f"{field} must be set: {hint}")
        if _CONTROL.search(value):
            raise _problem(f"{field} must not contain control characters (tabs, newlines)")
        return value.strip()

    @field_validator("nickname")
    @classmethod
    def _nickname(cls, value: str) -> str:
        try:
            schema_name(value)
        except NamingError as exc:
            raise _problem(f"nickname: {exc}") from None
        return value

    @field_validator("region", mode="before")
    @classmethod
    def _region(cls, value: Any) -> Any:
        text = value.strip().lower() if isinstance(value, str) else value
        if text not in ("us", "eu"):
            raise _problem(f"region must be us or eu (the region of the Segment workspace), not {value!r}")
        return text

    @field_validator("timezone", mode="before")
    @classmethod
    def _timezone(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise _problem("timezone must be the CleverTap project's IANA timezone, e.g. Asia/Kolkata or UTC")
        try:
            ZoneInfo(value.strip())
        except (KeyError, ValueError):
            raise _problem(
                f"timezone {value!r} is not an IANA timezone; use the CleverTap project's, e.g. Asia/Kolkata or UTC"
            ) from None
        return value.strip()

    @field_validator("data_type", mode="before")
    @classmethod
    def _data_type(cls, value: Any) -> Any:
        text = value.strip().lower() if isinstance(value, str) else value
        if text not in DATA_TYPES:
            raise _problem(f"data_type {value!r} is not a data type; use one of {', '.join(DATA_TYPES)}")
        return text

    @field_validator("events", mode="before")
    @classmethod
    def _events(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise _problem("events must be a list of CleverTap system event names, e.g. [App Launched, UTM Visited]")
        names: list[str] = []
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise _problem(f"events: {item!r} is not an event name; list CleverTap system event names")
            if item.strip() in names:
                raise _problem(f"events: {item.strip()!r} is listed twice")
            names.append(item.strip())
        return tuple(names)

    @field_validator("user_id_fields", mode="before")
    @classmethod
    def _user_id_fields(cls, value: Any) -> Any:
        allowed = ", ".join(USER_ID_FIELDS)
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if not isinstance(value, Sequence) or not value:
            raise _problem(f"user_id_fields must list at least one of {allowed}, in priority order")
        fields: list[str] = []
        for item in value:
            text = item.strip().lower() if isinstance(item, str) else item
            if text not in USER_ID_FIELDS:
                raise _problem(f"user_id_fields: {item!r} cannot be a user ID field; use {allowed}, in priority order")
            if text in fields:
                raise _problem(f"user_id_fields: {text} is listed twice")
            fields.append(text)
        return tuple(fields)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> ExportJob:
        if self.data_type == "selected_events":
            if not self.events:
                raise _problem(
                    "events: data_type selected_events needs at least one system event under events, "
                    "e.g. events: [App Launched, UTM Visited]"
                )
            catalog = (info.context or {}).get("catalog")
            if isinstance(catalog, EventCatalog):
                problems = [p for p in map(catalog.system_event_problem, self.events) if p is not None]
                if problems:
                    raise _problem(
                        "events: "
                        + "; ".join(problems)
                        + f"; selected_events takes system events only (is_system_event in {catalog.display_path}), "
                        "or use data_type all_events to load every event in the files"
                    )
        elif self.events is not None:
            raise _problem(
                f"events is only used with data_type selected_events (this export's data_type is {self.data_type}); "
                "remove events or set data_type: selected_events"
            )
        return self

    @property
    def kind(self) -> Literal["events", "profiles"]:
        """Events or profiles: CleverTap never lets an export switch between the two."""
        return "profiles" if self.data_type == "user_profiles" else "events"

    def today(self, now: datetime) -> date:
        """Today's date in the export's timezone (one-time windows are local dates)."""
        return now.astimezone(ZoneInfo(self.timezone)).date()

    def definition(self) -> dict[str, Any]:
        """The job as written in the settings file, in a canonical form (stored and compared)."""
        result: dict[str, Any] = {
            "name": self.name,
            "nickname": self.nickname,
            "region": self.region,
            "timezone": self.timezone,
            "location": self.location,
            "data_type": self.data_type,
        }
        if self.events is not None:
            result["events"] = list(self.events)
        result["user_id_fields"] = list(self.user_id_fields)
        result["anonymous_id_field"] = self.anonymous_id_field
        result["frequency"] = self.frequency.definition()
        return result

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any]) -> ExportJob:
        """A stored definition back into a job (no catalog check: it was checked when stored)."""
        return cls.model_validate(dict(definition))


def one_time_window(job: ExportJob, now: datetime) -> tuple[date, date]:
    """The dates a one-time export covers, checked against CleverTap's 60-day limit.

    Raises CtsyncError naming the export when the window is in the future or older than the
    last 60 days; called when the export is created (its window is then fixed).
    """
    if job.frequency.one_time is None:
        raise CtsyncError(f"export {job.name!r} is recurring; it has no one-time window")
    today = job.today(now)
    start, end = job.frequency.one_time.window(today)
    what = job.frequency.one_time.describe()
    zone = "" if job.timezone == "UTC" else f" in {job.timezone}"
    if end > today:
        raise CtsyncError(
            f"export {job.name!r}: frequency: {what} is in the future (today is {today}{zone}); "
            "a one-time export covers days up to today; use a recurring export for data still to come"
        )
    earliest = today - timedelta(days=ONE_TIME_MAX_DAYS)
    if start < earliest:
        raise CtsyncError(
            f"export {job.name!r}: frequency: {what} starts {start}, more than {ONE_TIME_MAX_DAYS} days ago; "
            f"CleverTap one-time exports cover at most the last {ONE_TIME_MAX_DAYS} days "
            f"(from {earliest} to {today}{zone})"
        )
    return start, end


@dataclass(frozen=True)
class ExportsFile:
    """The ``exports:`` section of a settings file: the valid jobs and every problem found."""

    path: Path
    jobs: tuple[ExportJob, ...]
    problems: tuple[str, ...]

    def job(self, name: str) -> ExportJob:
        for job in self.jobs:
            if job.name == name:
                return job
        names = ", ".join(job.name for job in self.jobs) or "none"
        raise CtsyncError(f"no export named {name!r} in {self.path} (exports defined: {names})")

    def raise_for_problems(self) -> None:
        if self.problems:
            raise ExportConfigError(self.path, self.problems)


class ExportConfigError(CtsyncError):
    """The settings file's exports section has problems; ``problems`` lists every one."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = tuple(problems)
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(f"{path}: {count} in exports:\n" + "\n".join(f"  - {p}" for p in problems))


def read_exports_file(path: Path | str, catalog: EventCatalog) -> ExportsFile:
    """Read and check the ``exports:`` section of the settings file; collects every problem."""
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CtsyncError(
            f"the settings file {file_path} does not exist; create it with an exports: section "
            "(see docs/exports.md) or point --config / CTSYNC_CONFIG at it"
        ) from None
    except OSError as exc:
        raise CtsyncError(f"cannot read the settings file {file_path}: {exc.strerror or exc}") from exc
    try:
        document = yaml.load(text, Loader=_SettingsLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise CtsyncError(f"{file_path} is not valid YAML: {exc}") from None
    jobs, problems = parse_exports(document, catalog)
    return ExportsFile(path=file_path, jobs=tuple(jobs), problems=tuple(problems))


def load_export_jobs(path: Path | str, catalog: EventCatalog) -> list[ExportJob]:
    """The export jobs of the settings file; ExportConfigError listing every problem."""
    exports = read_exports_file(path, catalog)
    exports.raise_for_problems()
    return list(exports.jobs)


def parse_exports(document: Any, catalog: EventCatalog) -> tuple[list[ExportJob], list[str]]:
    """Jobs and problems from a parsed settings document (the ``exports`` key)."""
    if document is None:
        return [], []
    if not isinstance(document, Mapping):
        return [], ["the settings file must be a mapping with an exports: list at the top"]
    entries = document.get("exports")
    if entries is None:
        return [], []
    if not isinstance(entries, list):
        return [], ["exports must be a list of exports, each starting with '- name: ...'"]
    jobs: list[ExportJob] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for position, entry in enumerate(entries, start=1):
        label = f"exports entry {position}"
        if not isinstance(entry, Mapping):
            problems.append(f"{label}: must be a mapping with name, nickname, location, data_type and frequency")
            continue
        name = entry.get("name")
        if isinstance(name, str) and name.strip():
            label = f"export {name.strip()!r}"
            if name.strip() in seen:
                problems.append(
                    f"{label}: name is used by exports entries {seen[name.strip()]} and {position}; "
                    "each export needs a unique name"
                )
                continue
            seen[name.strip()] = position
        try:
            job = ExportJob.model_validate(dict(entry), context={"catalog": catalog})
        except ValidationError as exc:
            problems.extend(f"{label}: {message}" for message in _describe(exc))
            continue
        jobs.append(job)
    return jobs, problems


def _describe(error: ValidationError) -> list[str]:
    messages = []
    for item in error.errors(include_url=False):
        location = [str(part) for part in item["loc"] if not isinstance(part, int)]
        path = ".".join(location)
        field = location[0] if location else ""
        if item["type"] == "ctsync":
            messages.append(item["msg"])
        elif item["type"] == "missing":
            hint = _HINTS.get(field)
            messages.append(f"{path} is required" + (f": {hint}" if hint else ""))
        elif item["type"] == "extra_forbidden":
            allowed = ", ".join(ExportJob.model_fields)
            messages.append(f"{path} is not a setting of an export; the settings are {allowed}")
        else:
            messages.append(f"{path}: {item['msg']}")
    return messages


def _parse_frequency(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or len(value) != 1 or next(iter(value)) not in ("one_time", "recurring"):
        raise _problem(f"frequency must be one of {FREQUENCY_FORMS}")
    kind, body = next(iter(value.items()))
    if kind == "recurring":
        hours = body.get("every_hours") if isinstance(body, Mapping) and set(body) == {"every_hours"} else None
        if hours is None:
            raise _problem(
                f"frequency: write recurring as {{recurring: {{every_hours: N}}}} with N from {MIN_EVERY_HOURS} "
                f"to {MAX_EVERY_HOURS}"
            )
        if isinstance(hours, bool) or not isinstance(hours, int):
            raise _problem(
                f"frequency: recurring every_hours must be a whole number of hours from {MIN_EVERY_HOURS} "
                f"to {MAX_EVERY_HOURS}, not {hours!r}"
            )
        if not MIN_EVERY_HOURS <= hours <= MAX_EVERY_HOURS:
            unit = "hour" if hours == 1 else "hours"
            raise _problem(
                f"frequency: recurring every {hours} {unit} is not allowed; CleverTap recurs every "
                f"{MIN_EVERY_HOURS} to {MAX_EVERY_HOURS} hours"
            )
        return {"recurring": {"every_hours": hours}}
    if isinstance(body, str):
        preset = body.strip().lower()
        if preset not in MONTH_PRESETS:
            raise _problem(
                f"frequency: one_time {body!r} is not a one-time period; use previous_month, current_month, "
                "{day: YYYY-MM-DD} or {from: YYYY-MM-DD, to: YYYY-MM-DD}"
            )
        return {"one_time": {"preset": preset}}
    if isinstance(body, Mapping) and set(body) == {"day"}:
        return {"one_time": {"day": _date(body["day"], "day")}}
    if isinstance(body, Mapping) and set(body) == {"from", "to"}:
        start, end = _date(body["from"], "from"), _date(body["to"], "to")
        if start > end:
            raise _problem(f"frequency: one_time from {start} is after to {end}; 'from' is the first day")
        days = (end - start).days + 1
        if days > ONE_TIME_MAX_DAYS:
            raise _problem(
                f"frequency: one_time from {start} to {end} covers {days} days; CleverTap one-time exports "
                f"cover at most the last {ONE_TIME_MAX_DAYS} days (use a recurring export for ongoing data)"
            )
        return {"one_time": {"from": start, "to": end}}
    raise _problem(
        "frequency: one_time must be {day: YYYY-MM-DD}, {from: YYYY-MM-DD, to: YYYY-MM-DD}, previous_month "
        "or current_month"
    )


class _SettingsLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text, so a bad date gets a message naming its export."""


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_SettingsLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def _date(value: Any, key: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _problem(f"frequency: one_time {key} {value!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-11-01")
