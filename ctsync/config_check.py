"""``ctsync config validate`` and ``ctsync config schema``: the whole settings file checked at once,
and its JSON Schema for editors.

The schema is derived from the same pydantic models that read each section (exports,
destinations, storage), so the editor and ``ctsync`` agree on what is valid; checks no schema
can express (CleverTap's rules on events and windows, a nickname's schema name, the edit
rules against stored exports) are ``config validate``'s.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from ctsync.destinations.config import DestinationSettings, parse_settings
from ctsync.errors import CtsyncError
from ctsync.jobs.definitions import MAX_EVERY_HOURS, MIN_EVERY_HOURS, MONTH_PRESETS, ExportJob
from ctsync.jobs.runner import ExportEnvironment, validate_exports
from ctsync.project import read_settings_document
from ctsync.storage import StorageEntry, parse_storage

SECTIONS = {
    "exports": "CleverTap export jobs: what to load, from where, how often (docs/exports.md)",
    "destinations": "where `ctsync sync --destination NAME` sends Identify calls",
    "storage": "object-storage credentials per protocol, from Prefect blocks",
}
SCHEMA_ID = "https://ctsync.dev/schemas/ctsync.schema.json"
SCHEMA_FILE = "ctsync.schema.json"
SCHEMA_MODELINE = f"# yaml-language-server: $schema=./{SCHEMA_FILE}"
"""First line of a settings file that editors with the YAML language server (VS Code, Neovim, ...) read."""


@dataclass
class ConfigReport:
    path: Path
    exports: list[str] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)
    storage: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Not problems: things that depend on where ctsync runs (an environment variable not set here)."""

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_settings_file(
    config: str | None, *, warehouse: str | None = None, environ: Mapping[str, str] | None = None
) -> ConfigReport:
    """Every problem of the settings file: unknown top-level keys, each export (as ``exports validate``
    does, stored exports and the workspace region included), each destination and storage entry."""
    env = os.environ if environ is None else environ
    path, document = read_settings_document(config, env)
    if document is None:
        raise CtsyncError(
            f"the settings file {path} does not exist; create one with `ctsync init DIR`, "
            "or point --config / CTSYNC_CONFIG at it"
        )
    report = ConfigReport(path=path)
    for key in document:
        if key not in SECTIONS:
            close = difflib.get_close_matches(str(key), SECTIONS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            report.problems.append(
                f"{key}: not a section of the settings file{hint}; the sections are {', '.join(SECTIONS)}"
            )
    exports, problems = validate_exports(ExportEnvironment.resolve(path, warehouse))
    report.exports = [job.name for job in exports.jobs]
    report.problems += problems
    _check_destinations(document.get("destinations"), report, env)
    storage, problems = parse_storage(document.get("storage"))
    report.storage = sorted(storage.entries)
    report.problems += problems
    return report


def _check_destinations(section: Any, report: ConfigReport, environ: Mapping[str, str]) -> None:
    if section is None:
        return
    if not isinstance(section, Mapping):
        report.problems.append("destinations: must map destination names to their settings (type: ...)")
        return
    for name, entry in section.items():
        if not isinstance(entry, Mapping):
            report.problems.append(f"destination {name!r}: must be a mapping (type: clevertap|segment|jsonl, ...)")
            continue
        try:
            parsed = parse_settings(str(name), entry)
        except CtsyncError as exc:
            report.problems.append(" ".join(str(exc).split()))
            continue
        report.destinations.append(str(name))
        for setting in ("passcode_env", "write_key_env"):
            variable = getattr(parsed, setting, None)
            if variable and not environ.get(variable):
                report.notes.append(f"destination {name!r}: {variable} ({setting}) is not set in this environment")


def settings_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``ctsync.yml``."""
    export = ExportJob.model_json_schema(mode="validation")
    definitions: dict[str, Any] = export.pop("$defs", {})
    for unused in ("Frequency", "OneTime", "Recurring"):
        definitions.pop(unused, None)
    export["properties"]["frequency"] = _frequency_schema()
    export["properties"]["nickname"]["description"] = "Source nickname; its snake_case names the warehouse schema."
    export["properties"]["location"]["description"] = "A folder, file or glob, local or on object storage (s3://...)."
    destination = TypeAdapter(DestinationSettings).json_schema(mode="validation")
    definitions.update(destination.pop("$defs", {}))
    storage = StorageEntry.model_json_schema(mode="validation")
    definitions.update(storage.pop("$defs", {}))
    definitions["Export"] = export
    definitions["Destination"] = destination
    definitions["Storage"] = storage
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "ctsync.yml",
        "description": "ctsync project settings: CleverTap export jobs, sync destinations, object storage.",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "exports": {"description": SECTIONS["exports"], "type": "array", "items": {"$ref": "#/$defs/Export"}},
            "destinations": {
                "description": SECTIONS["destinations"],
                "type": "object",
                "additionalProperties": {"$ref": "#/$defs/Destination"},
            },
            "storage": {
                "description": SECTIONS["storage"],
                "type": "object",
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                "additionalProperties": {"$ref": "#/$defs/Storage"},
            },
        },
        "$defs": definitions,
    }


def _frequency_schema() -> dict[str, Any]:
    day = {"type": "string", "format": "date"}
    return {
        "description": "one_time (a day, a range of at most the last 60 days, or a month preset) or recurring",
        "oneOf": [
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["recurring"],
                "properties": {
                    "recurring": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["every_hours"],
                        "properties": {
                            "every_hours": {"type": "integer", "minimum": MIN_EVERY_HOURS, "maximum": MAX_EVERY_HOURS}
                        },
                    }
                },
            },
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["one_time"],
                "properties": {
                    "one_time": {
                        "oneOf": [
                            {"enum": list(MONTH_PRESETS)},
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["day"],
                                "properties": {"day": day},
                            },
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["from", "to"],
                                "properties": {"from": day, "to": day},
                            },
                        ]
                    }
                },
            },
        ],
    }
