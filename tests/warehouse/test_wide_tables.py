"""A table never grows past its column limit; what has no column keeps its whole object in an overflow column."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ctsync.naming import property_column, quote_identifier
from ctsync.warehouse import tables
from ctsync.warehouse.loader import load_export_files
from tests.conftest import event
from tests.warehouse.conftest import columns, query
from tests.warehouse.test_loader import OPTIONS, SCHEMA


def test_keys_past_the_column_limit_keep_their_object_in_an_overflow_column(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables, "MAX_TABLE_COLUMNS", 40)
    wide = {f"prop {index:02d}": index for index in range(30)}
    traits = {f"trait{index:02d}": f"t{index}" for index in range(10)}
    export_file(
        "Scored",
        [
            event("Scored", 20240312094500, wide, identity="u1", **traits),
            event("Scored", 20240312094501, {"prop 00": 100}, identity="u2"),  # fits: no overflow for it
        ],
    )

    summary = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)

    assert not summary.failed, [f.error for f in summary.failed]
    assert summary.total("rows_inserted") == 2
    cols = columns(warehouse, "scored")
    assert len(cols) <= 40
    assert "_overflow_properties" in cols and "prop_00" in cols
    kept = [key for key in wide if property_column((key,)) in cols]
    left_out = [key for key in wide if key not in kept]
    assert kept and left_out
    rows = query(
        warehouse,
        f"select user_id, _overflow_properties, {', '.join(quote_identifier(property_column((k,))) for k in kept)} "
        f"from {SCHEMA}.scored order by user_id",
    )
    first, second = rows
    assert list(first[2:]) == [wide[key] for key in kept]
    assert json.loads(first[1]) == wide  # the whole object: every value is still there
    assert second[1] is None and second[2] == 100

    # A later load fills what room is left (empty variant columns were dropped) and spills the rest.
    later = {f"new {index:02d}": f"n{index}" for index in range(20)}
    export_file("Scored", [event("Scored", 20240312094502, later, identity="u3")], folder=tmp_path / "b")
    load_export_files([str(tmp_path / "b")], OPTIONS, warehouse=warehouse)
    cols = columns(warehouse, "scored")
    assert len(cols) <= 40
    added = [key for key in later if property_column((key,)) in cols]
    assert len(added) < len(later)
    row = query(
        warehouse,
        f"select _overflow_properties{''.join(', ' + quote_identifier(property_column((k,))) for k in added)} "
        f"from {SCHEMA}.scored where user_id = 'u3'",
    )[0]
    assert json.loads(row[0]) == later
    assert list(row[1:]) == [later[key] for key in added]


def test_an_export_wider_than_postgresql_allows_loads(
    export_file: Callable[..., Path], tmp_path: Path, warehouse: str
) -> None:
    wide = {f"p{index}": index for index in range(1_700)}  # PostgreSQL refuses tables of more than 1,600 columns
    export_file("Wide", [event("Wide", 20240312094500, wide, identity="u1")])

    summary = load_export_files([str(tmp_path / "export")], OPTIONS, warehouse=warehouse)

    assert not summary.failed, [f.error for f in summary.failed]
    cols = columns(warehouse, "wide")
    assert len(cols) <= tables.MAX_TABLE_COLUMNS
    overflow = query(warehouse, f"select _overflow_properties, p0 from {SCHEMA}.wide")[0]
    assert json.loads(overflow[0]) == wide and overflow[1] == 0
