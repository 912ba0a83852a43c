"""Real HTTP servers on 127.0.0.1 that play remote APIs in tests.

:class:`FakeHttpApi` is the shared part: a ``ThreadingHTTPServer`` on a background thread,
a record of every request (with the most requests seen in flight at once), an optional
in-flight limit answered with 429, and injectable faults (a status N times, a timeout, a
dropped connection, each optionally applied first). Subclasses implement :meth:`process`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self

import orjson


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, value: Any, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, orjson.dumps(value), headers or {})


@dataclass
class RecordedRequest:
    """One request as the server saw it, and what became of it."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lowercased."""
    body: bytes
    started: float
    finished: float = 0.0
    status: int | None = None
    """The status answered; None when no answer was sent (timeout or dropped connection)."""
    fault: str | None = None
    applied: bool = False
    """Whether the request's content was applied to the server's state."""

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Fault:
    kind: Literal["status", "timeout", "drop"]
    times: int
    status: int = 500
    retry_after: str | None = None
    body: bytes = b""
    apply: bool = False
    hold_seconds: float = 1.0


class FakeHttpApi:
    """Base of the fake API servers; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_in_flight: int | None = None,
        delay: float = 0.0,
        verbose: bool = False,
        show_bodies: bool = False,
    ) -> None:
        self.max_in_flight = max_in_flight
        """More requests than this at once are answered 429 (None: no limit)."""
        self.delay = delay
        """Seconds every request is held before it is processed (to make overlap visible)."""
        self.verbose = verbose
        """Print one line per request (standalone mode); ``show_bodies`` adds the body."""
        self.show_bodies = show_bodies
        self.lock = threading.RLock()
        self._faults: deque[Fault] = deque()
        self._requests: list[RecordedRequest] = []
        self._in_flight = 0
        self._max_in_flight_seen = 0
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted (standalone mode)."""
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self._stopping.set()
            self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------
    def fail_next(
        self,
        times: int = 1,
        status: int = 500,
        *,
        retry_after: str | int | float | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After``) unprocessed."""
        encoded = orjson.dumps(body) if body is not None else self.fault_body(status)
        retry = None if retry_after is None else str(retry_after)
        self._add(Fault("status", times, status=status, retry_after=retry, body=encoded))

    def time_out_next(self, times: int = 1, *, hold_seconds: float = 1.0, apply: bool = False) -> None:
        """Hold the next requests ``hold_seconds`` (longer than the client's timeout), then
        close without answering. ``apply=True`` applies them first, like a server whose
        answer was lost."""
        self._add(Fault("timeout", times, apply=apply, hold_seconds=hold_seconds))

    def drop_next(self, times: int = 1, *, apply: bool = False) -> None:
        """Close the connection of the next requests without answering (optionally applied)."""
        self._add(Fault("drop", times, apply=apply))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def _add(self, fault: Fault) -> None:
        if fault.times > 0:
            with self.lock:
                self._faults.append(fault)

    def _next_fault(self) -> Fault | None:
        with self.lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.popleft()
            return fault

    # -- recording ---------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._requests)

    @property
    def max_in_flight_seen(self) -> int:
        with self.lock:
            return self._max_in_flight_seen

    def statuses(self) -> list[int | None]:
        return [request.status for request in self.requests]

    # -- for subclasses ----------------------------------------------------------------
    def process(self, request: RecordedRequest) -> tuple[Reply, bool]:
        """Check and apply one request; return the reply and whether it was applied."""
        raise NotImplementedError

    def fault_body(self, status: int) -> bytes:
        return orjson.dumps({"code": status, "message": f"injected HTTP {status}"})

    def too_many_in_flight(self) -> Reply:
        return Reply.json(429, {"code": 429, "message": "too many concurrent requests"})

    def describe(self, request: RecordedRequest) -> str:
        return f"{len(request.body)} bytes"

    # -- request handling --------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        request = RecordedRequest(
            method=handler.command,
            path=handler.path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=handler.rfile.read(length) if length else b"",
            started=time.monotonic(),
        )
        with self.lock:
            self._requests.append(request)
            self._in_flight += 1
            in_flight = self._in_flight
            self._max_in_flight_seen = max(self._max_in_flight_seen, in_flight)
        try:
            if self.delay:
                self._stopping.wait(self.delay)
            reply = self._respond(request, in_flight)
        finally:
            with self.lock:
                self._in_flight -= 1
                request.finished = time.monotonic()
        if reply is None:
            handler.close_connection = True
        else:
            request.status = reply.status
            _send(handler, reply)
        if self.verbose:
            answer = request.status if request.status is not None else "no answer"
            print(
                f"{request.method} {request.path} -> {answer}"
                f"{f' [{request.fault}]' if request.fault else ''}: {self.describe(request)}",
                flush=True,
            )
            if self.show_bodies:
                print(request.body.decode("utf-8", "replace"), flush=True)

    def _respond(self, request: RecordedRequest, in_flight: int) -> Reply | None:
        """The reply to send, or None to close the connection without answering."""
        if self.max_in_flight is not None and in_flight > self.max_in_flight:
            request.fault = "in_flight_limit"
            return self.too_many_in_flight()
        fault = self._next_fault()
        if fault is None:
            reply, request.applied = self.process(request)
            return reply
        request.fault = fault.kind
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return Reply(fault.status, fault.body, headers)
        if fault.apply:
            _, request.applied = self.process(request)
        if fault.kind == "timeout":
            self._stopping.wait(fault.hold_seconds)
        return None


def _handler_for(api: FakeHttpApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            api._handle(self)

        def do_GET(self) -> None:
            api._handle(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
    try:
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(reply.body)
    except OSError:
        handler.close_connection = True  # the client went away
