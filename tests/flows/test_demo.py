"""The demo's Prefect API: a temporary server it starts must be gone when it is done."""

from __future__ import annotations

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.demo import prefect_api


def test_the_demo_stops_the_temporary_prefect_server_it_starts() -> None:
    harness_url = PREFECT_API_URL.value()
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert not PREFECT_API_URL.value()
        with prefect_api():
            url = PREFECT_API_URL.value()
            assert url and url != harness_url
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/health", timeout=2)
    assert httpx.get(f"{harness_url}/health", timeout=10).status_code == 200  # the shared server is untouched


def test_the_demo_uses_a_configured_prefect_api() -> None:
    configured = PREFECT_API_URL.value()
    with prefect_api():
        assert PREFECT_API_URL.value() == configured
