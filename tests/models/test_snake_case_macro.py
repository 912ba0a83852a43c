"""The dbt `snake_case` macro is ctsync.naming.snake_case: same table of cases, same random names."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from ctsync.naming import snake_case_or_empty
from tests.models.conftest import PROJECT, run_dbt

CASES = PROJECT / "tests" / "data" / "naming_cases.csv"
ALPHABET = "abcxyzABCXYZ0129 _-/.$&()'\"é日ß🙂\t"


def random_names(count: int, seed: int = 20261120) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 14))) for _ in range(count)]


def macro_results(names: list[str], tmp_path: Path) -> list[str]:
    inline = (
        "{% set out = [] %}{% for name in var('names') %}{% do out.append(snake_case(name)) %}{% endfor %}"
        "{{ tojson(out) }}"
    )
    run = run_dbt(
        ["compile", "--inline", inline],
        warehouse=tmp_path / "warehouse.duckdb",
        work=tmp_path,
        as_of=None,
        extra_vars={"names": names},
    )
    assert run.success, run.failures()
    compiled = run.result.result.results[0].node.compiled_code  # type: ignore[union-attr]
    results: list[str] = json.loads(compiled)
    return results


def test_macro_matches_the_shared_cases_and_python_on_random_names(tmp_path: Path) -> None:
    with CASES.open(newline="", encoding="utf-8") as handle:
        cases = [(row["input"], row["expected"]) for row in csv.DictReader(handle)]
    assert len(cases) > 40
    names = [name for name, _ in cases] + random_names(400)
    results = macro_results(names, tmp_path)
    assert len(results) == len(names)
    for (name, expected), result in zip(cases, results, strict=False):
        assert result == expected, f"snake_case({name!r})"
    mismatches = [
        (name, result, snake_case_or_empty(name))
        for name, result in zip(names, results, strict=True)
        if result != snake_case_or_empty(name)
    ]
    assert not mismatches, mismatches[:5]
