"""Blocks read through the Prefect API: Secret blocks for destinations, storage blocks for object storage.

The one module of ``ctsync/`` that talks to Prefect, and only when a settings file names a
block: the CLI and the flows pass :func:`read_block` and :func:`read_secret` as resolvers to
library code that never imports Prefect itself. From the CLI a Prefect API must be configured
(``PREFECT_API_URL``, or a Prefect Cloud login); without one, naming a block is an error
rather than a silent temporary server with no blocks in it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ctsync.errors import CtsyncError


def prefect_api_configured() -> bool:
    """Whether a Prefect API is set (environment or the active Prefect profile)."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def read_block(block_type_slug: str, name: str) -> Mapping[str, Any]:
    """The data of the block ``name`` of type ``block_type_slug``, secrets revealed, nested blocks included."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            document = client.read_block_document_by_name(
                name=name, block_type_slug=block_type_slug, include_secrets=True
            )
    except ObjectNotFound:
        raise CtsyncError(f"no Prefect {block_type_slug} block named {name!r} on the Prefect API") from None
    data: dict[str, Any] = _revealed(document.data)
    return data


def read_secret(name: str) -> str:
    """The value of the Prefect Secret block ``name``."""
    value = read_block("secret", name).get("value")
    if value is None:
        raise CtsyncError(f"the Prefect Secret block {name!r} has no value")
    return value if isinstance(value, str) else str(value)


def cli_read_block(block_type_slug: str, name: str) -> Mapping[str, Any]:
    """:func:`read_block` for the CLI: refuses when no Prefect API is configured."""
    _require_api(f"the Prefect block {name!r}")
    return read_block(block_type_slug, name)


def cli_read_secret(name: str) -> str:
    """:func:`read_secret` for the CLI: refuses when no Prefect API is configured."""
    _require_api(f"the Prefect Secret block {name!r}")
    return read_secret(name)


def _require_api(what: str) -> None:
    if not prefect_api_configured():
        raise CtsyncError(
            f"the settings file names {what}, but no Prefect API is configured: set PREFECT_API_URL "
            "(or `prefect cloud login`), or configure it from the environment instead"
        )


def _revealed(data: Any) -> Any:
    """Block data with pydantic secret values as plain values."""
    if isinstance(data, Mapping):
        return {key: _revealed(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_revealed(value) for value in data]
    secret = getattr(data, "get_secret_value", None)
    return secret() if callable(secret) else data
