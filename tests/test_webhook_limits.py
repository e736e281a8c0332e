"""The push webhook faces the network: half-sent requests cannot pile up threads or memory,
and a forge's genuine delivery is answered while they try.

The probe opened 2,000 connections that never finished their headers: 2,000 threads held
for minutes (55 -> 137 MB). Here the endpoint runs as ``swarmbot bot`` runs it
(``bot.chat.webhook.serve``), and the same flood meets a bounded pool, a cap on open
connections and a deadline per request.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bot.chat import webhook
from bot.core.config import load
from bot.core.httpserve import MAX_HANDLERS, MAX_OPEN, REQUEST_SECONDS, BoundedServer
from bot.queue.pushstore import PushStore
from commands import REGISTRY
from tests.harness import free_port, wait_until

pytestmark = pytest.mark.chat

SECRET = "webhook-limits-secret-0123456789"
FLOOD = 300


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[BoundedServer]:
    root: Path = tmp_path_factory.mktemp("webhook-limits")
    (root / "stacks").mkdir()
    config = root / "config.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [bot]
            stacks_dir = "stacks"
            [redis]
            url = "{redis_url}"
            prefix = "hooklimits"
            [security]
            signing_secret = "{"s" * 40}"
            [git]
            url = "http://127.0.0.1:9/unused.git"
            [webhook]
            port = {free_port()}
            secret = "{SECRET}"
            """
        )
    )
    loaded = load(config, commands=REGISTRY)
    server = webhook.serve(loaded, PushStore.connect(redis_url, loaded.redis_prefix))
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def ping(server: BoundedServer, zen: str) -> requests.Response:
    """A GitHub ping (a body of its own: the endpoint refuses the same body twice)."""
    body = b'{"zen": "%s"}' % zen.encode()
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return requests.post(
        f"http://127.0.0.1:{server.server_port}/hooks/git",
        data=body,
        headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": f"sha256={sig}"},
        timeout=REQUEST_SECONDS + 5,
    )


def half_sent(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /hooks/git HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
    return sock


def http_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("http_"))


def test_a_flood_of_half_sent_requests_is_bounded_and_cut_off(endpoint: BoundedServer) -> None:
    assert ping(endpoint, "before").status_code == 200  # a forge's ping, before the flood
    socks = [half_sent(endpoint.server_port) for _ in range(FLOOD)]
    try:
        wait_until(lambda: endpoint.open_connections >= MAX_OPEN, 10, "the cap to be reached")
        assert endpoint.open_connections == MAX_OPEN
        assert http_threads() <= MAX_HANDLERS
        # Those over the cap were told so at once and closed.
        late = socks[-1]
        late.settimeout(5)
        assert late.recv(100).startswith(b"HTTP/1.1 503")
        # The rest are cut off at their deadline, however slowly they go on sending.
        started = time.monotonic()
        for sock in socks[:MAX_OPEN]:
            sock.sendall(b"X")
        wait_until(lambda: endpoint.open_connections == 0, REQUEST_SECONDS + 5, "the cut-off")
        assert time.monotonic() - started < REQUEST_SECONDS + 5
        assert socks[0].recv(100) == b""  # closed by the server
    finally:
        for sock in socks:
            sock.close()
    # And a genuine delivery is answered as before.
    answer = ping(endpoint, "after")
    assert answer.status_code == 200
    assert answer.json()["ignored"] == "ping event"
    assert http_threads() <= MAX_HANDLERS
