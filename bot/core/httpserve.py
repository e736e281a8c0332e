"""A small WSGI server that a hostile network cannot exhaust: bounded threads, a cap on
open connections, and a hard deadline for each request's headers and body.

The push webhook faces the network. With the standard library's threading server every
connection got a thread for as long as its client kept it open: 2,000 half-sent requests
held 2,000 threads (55 -> 137 MB) for minutes. Here:

- connections are handled by a fixed pool of ``MAX_HANDLERS`` threads; one that arrives
  while ``MAX_OPEN`` are open is answered 503 at once and closed;
- every connection has ``REQUEST_SECONDS`` from its accept to have sent its headers and
  body: one watchdog thread shuts overdue sockets down (a blocked read then ends), so a
  client dripping a byte at a time cannot hold a handler past it.

aiohttp (already a dependency for Slack) would do the same with tasks instead of threads,
but its server has no deadline for headers either, and the endpoint is one synchronous
handler that the standard library serves in forty lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from bot.core.health import QuietHandler

log = logging.getLogger("swarmbot.http")
MAX_HANDLERS = 16
MAX_OPEN = 64
REQUEST_SECONDS = 10.0
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: 27\r\nConnection: close\r\n\r\n"
    b'{"error": "too many open"}\n'
)


class BoundedServer(WSGIServer):
    """A WSGIServer with a pool of handler threads, a cap and a deadline per connection."""

    request_seconds = REQUEST_SECONDS
    max_open = MAX_OPEN
    # The listen backlog (socketserver's default is 5): under a burst of connections a
    # short queue makes the kernel drop SYNs, and a genuine client then waits out TCP's
    # one-second retransmit, and more. Measured here: 40 connects took 4-6 s with 5.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], handler: type[WSGIRequestHandler], app: Callable[..., Any]
    ) -> None:
        super().__init__(address, handler)
        self.set_app(app)
        self._pool = ThreadPoolExecutor(MAX_HANDLERS, thread_name_prefix="http")
        self._open: dict[socket.socket, float] = {}  # connection -> its deadline
        self._lock = threading.Lock()
        self._closing = threading.Event()
        threading.Thread(target=self._watch, name="http-deadlines", daemon=True).start()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = len(self._open) >= self.max_open
            if not full:
                self._open[request] = time.monotonic() + self.request_seconds
        if full:
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(BUSY)
            self.shutdown_request(request)
            return
        self._pool.submit(self._handle, request, client_address)

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._lock:
                self._open.pop(request, None)
            self.shutdown_request(request)

    def _watch(self) -> None:
        """Shut down connections past their deadline: a read blocked on them returns."""
        while not self._closing.wait(0.25):
            now = time.monotonic()
            with self._lock:
                overdue = [s for s, deadline in self._open.items() if deadline < now]
            for sock in overdue:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        self._closing.set()
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


STATUS_WORDS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    503: "Service Unavailable",
}
# (method, path, headers with lower-case names, body, peer address) -> (status, JSON answer)
JsonHandler = Callable[[str, str, dict[str, str], bytes, str], tuple[int, dict[str, Any]]]


def json_app(
    handle: JsonHandler, max_body: int, on_error: Callable[[Exception], tuple[int, dict[str, Any]]]
) -> Callable[..., list[bytes]]:
    """A WSGI app around ``handle`` for an endpoint that answers JSON: a body over
    ``max_body`` is refused (413) before it is read; ``on_error`` answers the exceptions
    ``handle`` lets out that it knows (a store that is down: 503)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > max_body:
            status, answer = 413, {"error": "body too large"}
        else:
            body = environ["wsgi.input"].read(length) if length else b""
            headers = {
                k[5:].replace("_", "-").lower(): str(v)
                for k, v in environ.items()
                if k.startswith("HTTP_")
            }
            try:
                status, answer = handle(
                    environ.get("REQUEST_METHOD", ""),
                    environ.get("PATH_INFO", ""),
                    headers,
                    body,
                    environ.get("REMOTE_ADDR", "?"),
                )
            except Exception as exc:
                status, answer = on_error(exc)
        start_response(
            f"{status} {STATUS_WORDS.get(status, 'Error')}", [("Content-Type", "application/json")]
        )
        return [json.dumps(answer).encode()]

    return app


class RefusalBudget:
    """At most ``per_minute`` refusals a minute per peer reach the audit trail: a flood of
    forged deliveries must not push real entries out of its capped stream."""

    def __init__(self, per_minute: int = 20) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, list[float]] = {}  # peer -> times of audited refusals
        self._lock = threading.Lock()

    def may_audit(self, peer: str) -> bool:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._seen.get(peer, []) if now - t < 60]
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[peer] = [*recent, now] if len(recent) < self.per_minute else recent
            return len(recent) < self.per_minute


def serve_in_thread(
    name: str, host: str, port: int, path: str, app: Callable[..., list[bytes]]
) -> BoundedServer:
    """Serve ``app`` (an endpoint at ``path``) in a bounded pool of threads, from a daemon
    thread called ``name``; returns the server (its port)."""
    server = BoundedServer((host, port), QuietHandler, app)
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    log.info("%s on http://%s:%d%s", name, host, server.server_port, path)
    return server
