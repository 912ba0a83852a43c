"""The Prefect API of the demo and of ``make serve``: a temporary server they start must be gone when
they are done, and its address is the one they report."""

from __future__ import annotations

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.local_api import prefect_api


def test_the_demo_stops_the_temporary_prefect_server_it_starts() -> None:
    harness_url = PREFECT_API_URL.value()
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert not PREFECT_API_URL.value()
        with prefect_api() as (reported, temporary):
            url = PREFECT_API_URL.value()
            assert url and url != harness_url
            assert (reported, temporary) == (url, True)
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/health", timeout=2)
    assert httpx.get(f"{harness_url}/health", timeout=10).status_code == 200  # the shared server is untouched


def test_the_demo_uses_a_configured_prefect_api() -> None:
    configured = PREFECT_API_URL.value()
    with prefect_api() as (reported, temporary):
        assert PREFECT_API_URL.value() == configured
        assert (reported, temporary) == (configured, False)
