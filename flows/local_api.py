"""The Prefect API a local run reports to: PREFECT_API_URL when set, else a temporary server of its own."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def prefect_api() -> Iterator[tuple[str, bool]]:
    """Yields (API URL, whether it is a temporary server started here).

    The temporary server is started and stopped here rather than left to Prefect's exit hook, on a
    port of its own (never Prefect's shared default), so its address can be shown to the user:
    another shell reaches it with ``export PREFECT_API_URL=<url>`` while it runs.
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield str(configured), False
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = SubprocessASGIServer(port=port)
    server.start()
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield str(server.api_url), True
    finally:
        server.stop()
