"""The CleverTap event catalog: which events are system events and which are engagement events.

The lists live in one place, the dbt seed ``seeds/clevertap_event_catalog.csv`` (they follow
CleverTap's "Export to Segment" dialog: the "All System Events" table and the "Engagement
Events" list). This module reads that seed; nothing in Python repeats the lists.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ctsync.errors import CtsyncError
from ctsync.project import bundled_project

CATALOG_FILE = Path("seeds") / "clevertap_event_catalog.csv"
"""Where the seed sits inside a project (relative to the directory holding ``dbt_project.yml``)."""

_COLUMNS = ("event_name", "event_key", "description", "mparticle_event_type", "is_system_event", "is_engagement_event")


@dataclass(frozen=True)
class CatalogEvent:
    name: str
    """CleverTap's event name, exactly as it appears in ``eventName``."""
    key: str
    description: str
    mparticle_event_type: str | None
    is_system_event: bool
    is_engagement_event: bool


@dataclass(frozen=True)
class EventCatalog:
    path: Path
    events: tuple[CatalogEvent, ...]

    @property
    def system_events(self) -> frozenset[str]:
        """The "All System Events" data type."""
        return frozenset(event.name for event in self.events if event.is_system_event)

    @property
    def engagement_events(self) -> frozenset[str]:
        """The "Engagement Events" data type."""
        return frozenset(event.name for event in self.events if event.is_engagement_event)

    def get(self, name: str) -> CatalogEvent | None:
        for event in self.events:
            if event.name == name:
                return event
        return None

    def event(self, name: str) -> CatalogEvent:
        """The catalog entry of ``name``; CtsyncError (with a suggestion) when there is none."""
        found = self.get(name)
        if found is None:
            raise CtsyncError(f"{name!r} is not in the event catalog {self.path}{self._suggestion(name, self.names)}")
        return found

    @property
    def display_path(self) -> str:
        """The seed's path, relative to the working directory when it is inside it."""
        try:
            return str(self.path.relative_to(Path.cwd()))
        except ValueError:
            return str(self.path)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(event.name for event in self.events)

    def system_event_problem(self, name: str) -> str | None:
        """Why ``name`` cannot be a selected event (None when it is a system event)."""
        found = self.get(name)
        if found is not None and found.is_system_event:
            return None
        if found is None:
            return f"{name!r} is not a CleverTap event in the catalog" + self._suggestion(
                name, sorted(self.system_events)
            )
        return f"{name!r} is not a system event"

    def _suggestion(self, name: str, candidates: Iterable[str]) -> str:
        options = list(candidates)
        folded = {option.casefold(): option for option in options}
        close = folded.get(name.casefold()) or next(iter(difflib.get_close_matches(name, options, n=1)), None)
        return f" (did you mean {close!r}?)" if close and close != name else ""


def find_event_catalog(start: Path | None = None) -> Path:
    """The catalog seed of the project that holds ``start`` (default: the working directory).

    Looks in ``start`` and its parents for a project root (``dbt_project.yml`` or the seed
    itself), then falls back to the source tree ctsync runs from.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CATALOG_FILE
        if candidate.is_file():
            return candidate
        if (folder / "dbt_project.yml").is_file():
            break
    candidate = bundled_project() / CATALOG_FILE
    if candidate.is_file():
        return candidate
    raise CtsyncError(
        f"cannot find the event catalog {CATALOG_FILE} in {here} or its parents; "
        "run ctsync from the project folder (the one holding dbt_project.yml and seeds/)"
    )


def load_event_catalog(path: Path | str | None = None) -> EventCatalog:
    """Read the catalog seed (``path``, or the project's own, see ``find_event_catalog``)."""
    resolved = Path(path).resolve() if path is not None else find_event_catalog()
    try:
        stamp = resolved.stat().st_mtime_ns
    except OSError as exc:
        raise CtsyncError(f"cannot read the event catalog {resolved}: {exc.strerror or exc}") from exc
    return _read_catalog(resolved, stamp)


@cache
def _read_catalog(path: Path, _mtime_ns: int) -> EventCatalog:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in _COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise CtsyncError(f"the event catalog {path} lacks the column(s) {', '.join(missing)}")
            events: dict[str, CatalogEvent] = {}
            for line_number, row in enumerate(reader, start=2):
                name = (row["event_name"] or "").strip()
                if not name:
                    raise CtsyncError(f"the event catalog {path}, line {line_number}: event_name is empty")
                events[name] = CatalogEvent(
                    name=name,
                    key=(row["event_key"] or "").strip(),
                    description=(row["description"] or "").strip(),
                    mparticle_event_type=(row["mparticle_event_type"] or "").strip() or None,
                    is_system_event=_flag(row["is_system_event"], path, line_number, "is_system_event"),
                    is_engagement_event=_flag(row["is_engagement_event"], path, line_number, "is_engagement_event"),
                )
    except OSError as exc:
        raise CtsyncError(f"cannot read the event catalog {path}: {exc.strerror or exc}") from exc
    return EventCatalog(path=path, events=tuple(events.values()))


def _flag(value: str | None, path: Path, line_number: int, column: str) -> bool:
    text = (value or "").strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise CtsyncError(f"the event catalog {path}, line {line_number}: {column} must be true or false, not {value!r}")
