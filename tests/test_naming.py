"""Naming: go-snakecase v1.1.0, schema names, fallbacks and shortening."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from ctsync.naming import (
    NamingError,
    event_table,
    fit_identifier,
    identifier_for,
    property_column,
    schema_name,
    snake_case,
    snake_case_or_empty,
)

CASES = Path(__file__).parent / "data" / "naming_cases.csv"


def go_snakecase_v110(s: str) -> str:
    """A line-by-line transliteration of go-snakecase v1.1.0's loop, on UTF-8 bytes."""
    data = s.encode("utf-8")

    def is_upper(c: int) -> bool:
        return ord("A") <= c <= ord("Z")

    def is_lower(c: int) -> bool:
        return ord("a") <= c <= ord("z")

    def is_digit(c: int) -> bool:
        return ord("0") <= c <= ord("9")

    b = bytearray()
    idx = 0
    while idx < len(data):
        if not (is_lower(data[idx]) or is_upper(data[idx]) or is_digit(data[idx])):
            idx += 1
            continue
        if len(b) > 0:
            b.append(ord("_"))
        while idx < len(data) and (is_upper(data[idx]) or is_digit(data[idx])):
            c = data[idx]
            b.append(c + 32 if is_upper(c) else c)
            idx += 1
        while idx < len(data) and (is_lower(data[idx]) or is_digit(data[idx])):
            b.append(data[idx])
            idx += 1
    return b.decode("ascii")


def load_cases() -> list[tuple[str, str]]:
    with CASES.open(encoding="utf-8", newline="") as handle:
        return [(row["input"], row["expected"]) for row in csv.DictReader(handle)]


@pytest.mark.parametrize(("name", "expected"), load_cases())
def test_snake_case_table(name: str, expected: str) -> None:
    assert snake_case(name) == expected
    assert go_snakecase_v110(name) == expected


def test_snake_case_agrees_with_the_go_loop_on_generated_names() -> None:
    rng = random.Random(20261124)
    alphabet = "aAbBzZ09_ -./$#:é€ÖçЖ中🙂\t"
    for _ in range(20_000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert snake_case_or_empty(name) == go_snakecase_v110(name), name


def test_snake_case_is_idempotent() -> None:
    for name, _ in load_cases():
        once = snake_case_or_empty(name)
        assert snake_case_or_empty(once) == once


@pytest.mark.parametrize("name", ["", "   ", "中文事件", "Çüé€", "$$$", "🙂"])
def test_names_without_ascii_letters_or_digits_are_refused(name: str) -> None:
    with pytest.raises(NamingError, match="no ASCII letter or digit"):
        snake_case(name)


def test_documented_fallback_for_names_that_snake_case_to_nothing() -> None:
    first, second = identifier_for("उपयोगकर्ता लॉगिन"), identifier_for("खरीद")
    assert first.startswith("u_") and len(first) == 14
    assert first != second
    assert identifier_for("उपयोगकर्ता लॉगिन") == first  # stable


@pytest.mark.parametrize(
    ("nickname", "expected"),
    [
        ("CleverTap_Prod", "clevertap_prod"),
        ("CleverTap_Staging", "clevertap_staging"),
        ("CleverTap Dev (EU)", "clevertap_dev_eu"),
        ("customer.io", "customer_io"),
        ("  --Prod--  ", "prod"),
        ("clevertap_prod", "clevertap_prod"),
    ],
)
def test_schema_name(nickname: str, expected: str) -> None:
    assert schema_name(nickname) == expected


def test_schema_name_refuses_an_empty_result() -> None:
    with pytest.raises(NamingError, match="nickname"):
        schema_name("---")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("CT App Version",), "ct_app_version"),
        (("Discount", "Percent"), "discount_percent"),
        (("id",), "_id"),
        (("user_id",), "_user_id"),
        (("userId",), "_user_id"),
        (("Timestamp",), "_timestamp"),
        (("event",), "_event"),
        (("context", "ip"), "_context_ip"),
        (("Context Page",), "_context_page"),
        (("Items",), "items"),
    ],
)
def test_property_columns_never_take_standard_names(path: tuple[str, ...], expected: str) -> None:
    assert property_column(path) == expected


def test_event_named_like_a_segment_table_gets_a_prefix() -> None:
    assert event_table("Users") == "_users"
    assert event_table("Tracks") == "_tracks"
    assert event_table("App Launched") == "app_launched"


def test_long_identifiers_are_shortened_without_collisions() -> None:
    stem = "a very long property name that goes on and on beyond the limit of postgres"
    first = property_column((stem + " one",))
    second = property_column((stem + " two",))
    assert len(first.encode()) <= 63 and len(second.encode()) <= 63
    assert first != second
    assert fit_identifier("short") == "short"
    assert property_column((stem + " one",)) == first
