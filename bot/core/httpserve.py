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
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

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
