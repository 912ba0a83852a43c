"""A CleverTap Upload API (``POST /1/upload``) server for tests and manual trials.

Checks the account id and passcode headers (401 like the real API), at most 1000 records
a request (400), at most ``max_in_flight`` requests at once (429, 15 by default like the
real API), and the shape of each profile record. Records it refuses are answered like the
real API: HTTP 200, ``status: success``, and an ``unprocessed`` entry whose ``error`` ends
with "Skipped record number : N" and whose ``record`` is the record as a JSON *string*.
Accepted records are kept (``records``) and merged into profiles like CleverTap's upsert
(``profile(identity=...)`` / ``profile(object_id=...)``). Event records (``type: event``) are
appended to ``events`` every time they arrive, as CleverTap appends them (a repeat is a
duplicate); they are checked like the real API: ``evtName`` (509), one identifier (523), ``ts``
(525), a restricted system event (513), and no nested objects or arrays in ``evtData`` except
Charged's ``Items`` (512). Device-token records (``type: token``) land in ``tokens``.

CleverTap upserts each record on its own, so records of requests in flight together may land in
any order. With ``landing_seed`` set, accepted records wait (``waiting``) and :meth:`settle`
applies everything accepted since the last call in an order shuffled by that seed: the worst
case of every request of a sync being in flight together. Call it after each sync.

    python -m tests.servers.clevertap --port 8088 --account-id X --passcode Y
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable, Collection, Iterator
from typing import Any, Literal

import orjson
import pytest

from tests.servers import FakeHttpApi, RecordedRequest, Reply

MAX_RECORDS = 1000
RESTRICTED_EVENTS = frozenset(
    {
        "Stayed",
        "Notification Clicked",
        "Notification Viewed",
        "UTM Visited",
        "Notification Sent",
        "App Launched",
        "wzrk_d",
        "App Uninstalled",
        "Notification Bounced",
        "Geocluster Entered",
        "Geocluster Exited",
    }
)
_E164 = re.compile(r"\+[1-9]\d{5,14}")


class CleverTapServer(FakeHttpApi):
    def __init__(
        self,
        account_id: str = "test-account",
        passcode: str = "test-passcode",
        *,
        max_records: int = MAX_RECORDS,
        max_in_flight: int | None = 15,
        reject_identities: Collection[str] = (),
        reject_when: Callable[[dict[str, Any]], bool] | None = None,
        reject_code: int = 516,
        reject_error: str = "Profile data is incorrect. Rejected by the test server.",
        validate_fields: bool = True,
        answer_status: str = "success",
        record_format: Literal["string", "object", "omit"] = "string",
        include_record_number: bool = True,
        processed_override: int | None = None,
        landing_seed: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(max_in_flight=max_in_flight, **options)
        self.account_id = account_id
        self.passcode = passcode
        self.max_records = max_records
        self.reject_identities = set(reject_identities)
        self.reject_when = reject_when
        self.reject_code = reject_code
        self.reject_error = reject_error
        self.validate_fields = validate_fields
        """Check Gender (M/F), Phone (E.164) and Email like the real API (514, 516, 515)."""
        self.answer_status = answer_status
        """Top-level ``status`` of 200 answers ("partial" or "fail" to test clients)."""
        self.record_format = record_format
        self.include_record_number = include_record_number
        self.processed_override = processed_override
        self.records: list[dict[str, Any]] = []
        """Every accepted profile record, in the order it was applied to the profiles."""
        self.events: list[dict[str, Any]] = []
        """Every accepted event record, in arrival order, repeats included."""
        self.tokens: list[dict[str, Any]] = []
        """Every accepted device-token record."""
        self.waiting: list[dict[str, Any]] = []
        """Accepted records not applied yet (``landing_seed`` set, :meth:`settle` not called since)."""
        self._landing = random.Random(landing_seed) if landing_seed is not None else None
        self._profiles: dict[tuple[str, str], dict[str, Any]] = {}
        self._identity_of_object: dict[str, str] = {}

    # -- state -------------------------------------------------------------------------
    def profile(self, *, identity: str | None = None, object_id: str | None = None) -> dict[str, Any] | None:
        """Merged profileData of a user, or None if nothing was accepted for them."""
        with self.lock:
            key = self._key(identity, object_id)
            found = self._profiles.get(key)
            return dict(found) if found is not None else None

    def settle(self) -> None:
        """Apply the records accepted since the last call, in the seeded shuffled order."""
        with self.lock:
            landing, self.waiting = self.waiting, []
            if self._landing is not None:
                self._landing.shuffle(landing)
            for record in landing:
                self._apply(record)

    def profiles(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self.lock:
            return {key: dict(value) for key, value in self._profiles.items()}

    def _key(self, identity: str | None, object_id: str | None) -> tuple[str, str]:
        if identity is not None:
            return ("identity", identity)
        assert object_id is not None, "give identity or object_id"
        linked = self._identity_of_object.get(object_id)
        return ("identity", linked) if linked is not None else ("objectId", object_id)

    def _apply(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        data = record["profileData"]
        object_id = _text(record.get("objectId"))
        identity = _text(record.get("identity")) or _text(data.get("Identity"))
        if object_id is not None and identity is not None:
            anonymous = self._profiles.pop(("objectId", object_id), {})
            self._identity_of_object[object_id] = identity
            self._profiles.setdefault(("identity", identity), {}).update(anonymous)
        self._profiles.setdefault(self._key(identity, object_id), {}).update(data)

    # -- requests ----------------------------------------------------------------------
    def process(self, request: RecordedRequest) -> tuple[Reply, bool]:
        if request.method != "POST" or request.path != "/1/upload":
            return _fail(404, f"no route for {request.method} {request.path}"), False
        headers = request.headers
        if (
            headers.get("x-clevertap-account-id") != self.account_id
            or headers.get("x-clevertap-passcode") != self.passcode
        ):
            return _fail(401, "Account ID is not valid"), False
        if not headers.get("content-type", "").startswith("application/json"):
            return _fail(400, "Content-Type must be application/json"), False
        try:
            body = request.json()
        except orjson.JSONDecodeError:
            return _fail(400, "Request body is not valid JSON"), False
        records = body.get("d") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            return _fail(400, 'The body must be {"d": [records]}'), False
        if len(records) > self.max_records:
            return _fail(400, f"At most {self.max_records} records per request"), False
        return self._upload(records), True

    def _upload(self, records: list[Any]) -> Reply:
        unprocessed: list[dict[str, Any]] = []
        with self.lock:
            for number, record in enumerate(records, start=1):
                problem = self._problem(record)
                if problem is None and record.get("type") == "event":
                    self.events.append(record)
                elif problem is None and record.get("type") == "token":
                    self.tokens.append(record)
                elif problem is None and self._landing is not None:
                    self.waiting.append(record)
                elif problem is None:
                    self._apply(record)
                else:
                    unprocessed.append(self._unprocessed(number, record, *problem))
        processed = len(records) - len(unprocessed)
        return Reply.json(
            200,
            {
                "status": self.answer_status,
                "processed": processed if self.processed_override is None else self.processed_override,
                "unprocessed": unprocessed,
            },
        )

    def _unprocessed(self, number: int, record: Any, code: int, error: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"status": "fail", "code": code}
        entry["error"] = f"{error}Skipped record number : {number}" if self.include_record_number else error
        if self.record_format == "string":
            entry["record"] = json.dumps(record)
        elif self.record_format == "object":
            entry["record"] = record
        return entry

    def _problem(self, record: Any) -> tuple[int, str] | None:
        """The (code, error) CleverTap would answer for this record, or None to accept it."""
        if not isinstance(record, dict):
            return 512, "Invalid record structure."
        if record.get("type") not in ("profile", "event", "token"):
            return 524, "Record is neither an event nor a profile."
        identifiers = [key for key in ("identity", "objectId") if record.get(key) not in (None, "")]
        if len(identifiers) != 1:
            return 523, "Exactly one of identity and objectId must be set."
        ts = record.get("ts")
        if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool)):
            return 525, "ts is not a valid UNIX epoch."
        if record["type"] == "event":
            return self._event_problem(record)
        if record["type"] == "token":
            data = record.get("tokenData")
            if not isinstance(data, dict) or not data.get("id") or data.get("type") not in ("fcm", "apns"):
                return 530, "tokenData must have an id and a type of fcm or apns."
            return None
        data = record.get("profileData")
        if not isinstance(data, dict):
            return 512, "profileData must be an object."
        if self._refused(record, data):
            return self.reject_code, self.reject_error
        return self._field_problem(data) if self.validate_fields else None

    def _refused(self, record: dict[str, Any], data: dict[str, Any]) -> bool:
        ids = {
            _text(record.get("identity")),
            _text(record.get("objectId")),
            _text(data.get("Identity")),
        }
        if ids & self.reject_identities:
            return True
        return self.reject_when is not None and self.reject_when(record)

    def _event_problem(self, record: dict[str, Any]) -> tuple[int, str] | None:
        name = record.get("evtName")
        if not isinstance(name, str) or not name:
            return 509, "Event name is mandatory."
        if name in RESTRICTED_EVENTS:
            return 513, "Raised a restricted system event."
        data = record.get("evtData")
        if not isinstance(data, dict):
            return 512, "Invalid event structure."
        for key, value in data.items():
            if name == "Charged" and key == "Items":
                if not isinstance(value, list) or not all(
                    isinstance(item, dict) and not any(isinstance(v, dict | list) for v in item.values())
                    for item in value
                ):
                    return 512, "Charged Items must be an array of flat objects."
            elif isinstance(value, dict | list):
                return 512, "Invalid event structure: nested objects and arrays are not allowed."
        if self._refused(record, data):
            return self.reject_code, self.reject_error
        return None

    @staticmethod
    def _field_problem(data: dict[str, Any]) -> tuple[int, str] | None:
        gender = data.get("Gender")
        if gender is not None and gender not in ("M", "F"):
            return 514, "Gender needs to be M/F."
        phone = data.get("Phone")
        if phone is not None and not (isinstance(phone, str) and _E164.fullmatch(phone)):
            return 516, "Profile data is incorrect. Phone number is not valid."
        email = data.get("Email")
        if email is not None and not (isinstance(email, str) and "@" in email):
            return 515, "Email is not valid."
        return None

    def fault_body(self, status: int) -> bytes:
        return orjson.dumps({"status": "fail", "error": f"injected HTTP {status}", "code": status})

    def too_many_in_flight(self) -> Reply:
        return _fail(429, "Too many concurrent requests")

    def describe(self, request: RecordedRequest) -> str:
        try:
            records = request.json().get("d", [])
        except (orjson.JSONDecodeError, AttributeError):
            return f"{len(request.body)} bytes"
        return f"{len(records)} record(s), {len(request.body)} bytes"


def _fail(status: int, error: str) -> Reply:
    return Reply.json(status, {"status": "fail", "error": error, "code": status})


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


@pytest.fixture
def clevertap_server() -> Iterator[CleverTapServer]:
    """A running CleverTapServer (account ``test-account``, passcode ``test-passcode``)."""
    with CleverTapServer() as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(description="A CleverTap Upload API test server.")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--account-id", default="test-account")
    parser.add_argument("--passcode", default="test-passcode")
    parser.add_argument("--max-in-flight", type=int, default=15)
    parser.add_argument("--bodies", action="store_true", help="also print each request body")
    args = parser.parse_args()
    server = CleverTapServer(
        args.account_id,
        args.passcode,
        port=args.port,
        max_in_flight=args.max_in_flight,
        verbose=True,
        show_bodies=args.bodies,
    )
    print(f"CleverTap Upload API server on {server.url}/1/upload (account {args.account_id!r})")
    server.serve_forever()


if __name__ == "__main__":
    main()
