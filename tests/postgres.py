"""PostgreSQL for the tests: a fresh database per test on the server named by CTSYNC_TEST_POSTGRES_URL.

Locally, tests that need the server are skipped with the command that starts one; in CI
(``CI`` set, as .ci/run does) a missing server fails them instead: they must never be skipped there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

URL_VARIABLE = "CTSYNC_TEST_POSTGRES_URL"


def server_url() -> str:
    url = os.environ.get(URL_VARIABLE, "")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{URL_VARIABLE} is not set in CI: .ci/run starts PostgreSQL (bash .ci/postgres start)")
    pytest.skip(f'needs PostgreSQL: run eval "$(bash .ci/postgres start)" to start one and set {URL_VARIABLE}')


@contextmanager
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty database, dropped afterwards."""
    import psycopg2
    from sqlalchemy.engine import make_url

    server = server_url()
    name = f"ctsync_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'create database "{name}"')
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'drop database if exists "{name}" with (force)')
        admin.close()
