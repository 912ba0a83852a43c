"""A Segment-compatible ``/v1/batch`` server for tests and manual trials.

Checks Basic auth (write key as user name, empty password), the JSON content type, the
500 KB / 2500 messages / 32 KB limits and the shape of each Identify. Accepted messages are
kept in arrival order (``messages``) and merged into the latest traits per userId and per
anonymousId (``traits_by_user_id``, ``traits_by_anonymous_id``).

    python -m tests.servers.segment --port 8089 --write-key my-key
"""

from __future__ import annotations

import argparse
import base64
import binascii
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.servers import FakeHttpApi, RecordedRequest, Reply

MAX_BODY_BYTES = 500_000
MAX_BATCH_MESSAGES = 2500
MAX_MESSAGE_BYTES = 32 * 1024


class SegmentServer(FakeHttpApi):
    def __init__(
        self,
        write_key: str = "test-write-key",
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_batch_messages: int = MAX_BATCH_MESSAGES,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.write_key = write_key
        self.max_body_bytes = max_body_bytes
        self.max_batch_messages = max_batch_messages
        self.max_message_bytes = max_message_bytes
        self.messages: list[dict[str, Any]] = []
        """Every accepted message, in arrival order (repeats included)."""
        self.traits_by_user_id: dict[str, dict[str, Any]] = {}
        self.traits_by_anonymous_id: dict[str, dict[str, Any]] = {}

    def message_ids(self) -> list[str]:
        with self.lock:
            return [message["messageId"] for message in self.messages]

    def process(self, request: RecordedRequest) -> tuple[Reply, bool]:
        batch = self._checked_batch(request)
        if isinstance(batch, Reply):
            return batch, False
        with self.lock:
            for message in batch:
                self._apply(message)
        return Reply.json(200, {"success": True}), True

    def _checked_batch(self, request: RecordedRequest) -> list[dict[str, Any]] | Reply:
        """The batch's messages, or the error reply that refuses the request."""
        if request.method != "POST" or request.path != "/v1/batch":
            return _error(404, "not_found", f"no route for {request.method} {request.path}")
        if not self._authorised(request.headers.get("authorization", "")):
            return _error(401, "unauthorized", "invalid write key")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _error(400, "invalid_request", "Content-Type must be application/json")
        if len(request.body) > self.max_body_bytes:
            return _error(400, "request_too_large", f"body over {self.max_body_bytes} bytes")
        try:
            body = request.json()
        except orjson.JSONDecodeError:
            return _error(400, "invalid_json", "the body is not valid JSON")
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, list) or not batch:
            return _error(400, "invalid_request", "batch must be a non-empty array")
        if len(batch) > self.max_batch_messages:
            return _error(400, "too_many_messages", f"over {self.max_batch_messages} messages")
        for position, message in enumerate(batch):
            problem = self._message_problem(message)
            if problem is not None:
                return _error(400, "invalid_message", f"batch[{position}]: {problem}")
        return batch

    def _authorised(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme != "Basic":
            return False
        try:
            decoded = base64.b64decode(token, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self.write_key}:"

    def _message_problem(self, message: object) -> str | None:
        if not isinstance(message, dict):
            return "not an object"
        if len(orjson.dumps(message)) > self.max_message_bytes:
            return f"message over {self.max_message_bytes} bytes"
        if message.get("type") != "identify":
            return "type must be identify"
        user_id, anonymous_id = message.get("userId"), message.get("anonymousId")
        if not (isinstance(user_id, str) and user_id) and not (isinstance(anonymous_id, str) and anonymous_id):
            return "no_user_anon_id: userId or anonymousId is required"
        message_id = message.get("messageId")
        if not isinstance(message_id, str) or not message_id or len(message_id) >= 100:
            return "messageId must be a string under 100 characters"
        if not isinstance(message.get("traits"), dict):
            return "traits must be an object"
        return None

    def _apply(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if message.get("userId"):
            self.traits_by_user_id.setdefault(message["userId"], {}).update(message["traits"])
        if message.get("anonymousId"):
            profile = self.traits_by_anonymous_id.setdefault(message["anonymousId"], {})
            profile.update(message["traits"])

    def fault_body(self, status: int) -> bytes:
        return orjson.dumps({"code": str(status), "message": f"injected HTTP {status}"})

    def describe(self, request: RecordedRequest) -> str:
        try:
            batch = request.json().get("batch", [])
        except (orjson.JSONDecodeError, AttributeError):
            return f"{len(request.body)} bytes"
        return f"{len(batch)} message(s), {len(request.body)} bytes"


def _error(status: int, code: str, message: str) -> Reply:
    return Reply.json(status, {"code": code, "message": message})


@pytest.fixture
def segment_server() -> Iterator[SegmentServer]:
    """A running SegmentServer with write key ``test-write-key``."""
    with SegmentServer() as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(description="A Segment-compatible /v1/batch test server.")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--write-key", default="test-write-key")
    parser.add_argument("--max-in-flight", type=int, default=None)
    parser.add_argument("--bodies", action="store_true", help="also print each request body")
    args = parser.parse_args()
    server = SegmentServer(
        args.write_key,
        port=args.port,
        max_in_flight=args.max_in_flight,
        verbose=True,
        show_bodies=args.bodies,
    )
    print(f"Segment-compatible server on {server.url}/v1/batch (write key {args.write_key!r})")
    server.serve_forever()


if __name__ == "__main__":
    main()
