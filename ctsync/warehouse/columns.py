"""Column planning: which columns a batch needs, their types, and the SQL that fills them.

The rules (also in docs/decisions.md):

* A new column takes the narrowest type that holds every value the batch has for it:
  BOOLEAN, BIGINT, DOUBLE (integers and reals mixed), else VARCHAR (strings; arrays and
  objects as JSON text; mixed kinds as text).
* An existing BIGINT column that meets reals is widened to DOUBLE.
* Any other value that does not fit its column's type is kept, as text, in the column's
  variant ``<column>__v_varchar``, created when first needed. Nothing is dropped.
* Of several spellings of one column in one record, the first listed fills it (value or variant);
  the others' values go to ``_unplaced_values`` (``ctsync.warehouse.unplaced``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ctsync.naming import VARIANT_SUFFIX, fit_identifier
from ctsync.warehouse.structure import Leaf, ObjectReader

NUMERIC_KINDS = frozenset({"BIGINT", "UBIGINT", "DOUBLE"})
INTEGER_KINDS = frozenset({"BIGINT", "UBIGINT"})


def new_column_type(kinds: frozenset[str]) -> str | None:
    """Type for a column first seen with values of these JSON kinds (None: only nulls)."""
    present = set(kinds) - {"NULL"}
    if not present:
        return None
    if present <= INTEGER_KINDS:
        return "BIGINT"
    if present <= NUMERIC_KINDS:
        return "DOUBLE"
    if present == {"BOOLEAN"}:
        return "BOOLEAN"
    return "VARCHAR"


def widened_type(current: str, kinds: frozenset[str]) -> str:
    """BIGINT meeting reals becomes DOUBLE; every other type stays as it is."""
    if current == "BIGINT" and "DOUBLE" in kinds:
        return "DOUBLE"
    return current


def variant_column(column: str) -> str:
    return fit_identifier(column + VARIANT_SUFFIX)


@dataclass
class ColumnPlan:
    """One warehouse column filled from one or more source leaves (e.g. two spellings)."""

    name: str
    type: str
    leaves: list[Leaf] = field(default_factory=list)
    exists: bool = False
    widen_from: str | None = None

    @property
    def has_variant(self) -> bool:
        """Whether a value can miss the column's type (``value_sql`` gives a variant for all but VARCHAR)."""
        return self.type != "VARCHAR"

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset().union(*(leaf.kinds for leaf in self.leaves))


def value_sql(text: str, column_type: str) -> tuple[str, str | None]:
    """SQL for the column value and for the variant, given the leaf's text ``text``.

    A value goes into a typed column only when casting it back gives the very same text
    (``01234`` is not the BIGINT 1234, ``1.0`` is not the BIGINT 1); everything else is kept,
    as that text, in the variant. Returns ``(value, variant)``; ``variant`` is None for VARCHAR.
    """
    if column_type == "VARCHAR":
        return text, None
    if column_type == "BIGINT":
        as_bigint = f"try_cast({text} as BIGINT)"
        value = f"case when cast({as_bigint} as varchar) = {text} then {as_bigint} end"
    elif column_type == "DOUBLE":
        as_double, as_bigint = f"try_cast({text} as DOUBLE)", f"try_cast({text} as BIGINT)"
        value = (
            f"case when cast({as_double} as varchar) = {text} then {as_double} "
            f"when cast({as_bigint} as varchar) = {text} then cast({as_bigint} as DOUBLE) end"
        )
    elif column_type == "BOOLEAN":
        value = f"case {text} when 'true' then true when 'false' then false end"
    else:  # a type the loader never creates (changed by hand): best-effort cast
        value = f"try_cast({text} as {column_type})"
    return value, f"case when {text} is not null and ({value}) is null then {text} end"


def plan_expressions(plan: ColumnPlan, reader: ObjectReader) -> tuple[str, str | None]:
    """Value and variant SQL for a column: the text of the first of its leaves (in their listed order) that
    has a value, typed by :func:`value_sql`. Later leaves' other values go to ``_unplaced_values``."""
    texts = [reader.access(leaf.path) for leaf in plan.leaves]
    return value_sql(texts[0] if len(texts) == 1 else f"coalesce({', '.join(texts)})", plan.type)
