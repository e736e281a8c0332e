"""``/healthz`` and ``/metrics`` for the bot and the worker (prometheus-client).

A tiny WSGI server in a thread: the bot is asyncio and the worker is threads, and both need
the same two endpoints without another framework. ``/healthz`` runs the process's own
checks (Redis reachable; the chat adapters connected, or Docker reachable) and answers 200
or 503 with what failed; ``/metrics`` is prometheus-client's exposition.

``swarmbot healthcheck`` (the image's HEALTHCHECK) asks that same endpoint. It finds it
through a small file the serving process writes (``$SWARMBOT_RUN_DIR``, default the temp
directory): a container knows its command, not which of the config's two ports is its own,
and on a host network both ports answer on 127.0.0.1.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

log = logging.getLogger("swarmbot.health")

COMMANDS = Counter(
    "swarmbot_commands_total", "Chat commands by name and outcome", ["command", "outcome"]
)
REFUSALS = Counter("swarmbot_refusals_total", "Refused commands by reason", ["reason"])
JOB_SECONDS = Histogram(
    "swarmbot_job_duration_seconds",
    "Time from a worker taking a job to its answer",
    ["op"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
JOBS = Counter(
    "swarmbot_jobs_total", "Jobs answered by the worker, by operation and state", ["op", "state"]
)
DEPLOYS = Counter("swarmbot_deploy_outcomes_total", "Per-service outcomes of deploys", ["outcome"])
NOTICES = Counter("swarmbot_notices_posted_total", "Notices sent to chat rooms")
DELIVERY_FAILURES = Counter(
    "swarmbot_delivery_failures_total",
    "Answers and notices the bot failed to post (each message counted once)",
    ["platform"],
)
ERRORS = Counter("swarmbot_errors_total", "Errors talking to Docker or Redis", ["component"])
# kind: "full" (every service: on reconnecting, taking over, every poll_seconds) or "named"
# (the services events named, and those a held change follows).
NOTICE_LOOKS = Counter("swarmbot_notice_looks_total", "Looks of the notice watcher", ["kind"])
NOTICE_SERVICES_READ = Counter(
    "swarmbot_notice_services_read_total", "Services the notice watcher compared", ["kind"]
)
# Per swarm (its name in [swarms]; "" for a bot of one swarm, which Prometheus reads as
# no label at all).
QUEUE_DEPTH = Gauge("swarmbot_queue_depth", "Jobs queued and not yet answered", ["swarm"])
OLDEST_JOB = Gauge(
    "swarmbot_oldest_job_age_seconds", "Age of the oldest unanswered job", ["swarm"]
)
HEARTBEAT_AGE = Gauge(
    "swarmbot_worker_heartbeat_age_seconds",
    "Seconds since the freshest worker heartbeat",
    ["swarm"],
)

Check = Callable[[], dict[str, str]]  # name -> problem ("" when fine)


class PortInUse(OSError):
    """The configured health port cannot be bound (another process has it)."""


class QuietHandler(WSGIRequestHandler):
    """No access log line per request: scrapes every few seconds would drown the log (and
    the push webhook logs and audits each delivery itself)."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(
    host: str,
    port: int,
    check: Check,
    refresh: Callable[[], None] | None = None,
    role: str = "",
    degraded: Check | None = None,
    about: Callable[[], dict[str, Any]] | None = None,
) -> WSGIServer:
    """Serve /healthz and /metrics on ``host:port`` in a daemon thread; returns the server.
    With ``role`` ("bot", "worker"), also tell ``swarmbot healthcheck`` where it is.

    ``check`` finds what makes the process unfit (503: the orchestrator may restart it);
    ``degraded`` what works badly but a restart cannot mend, such as a room that refuses
    the bot's posts: 200, with ``"degraded"`` saying what. ``about`` adds what the process
    acts on (the worker: its daemon, node and swarm) to every answer."""
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            try:
                problems = {k: v for k, v in check().items() if v}
            except Exception as exc:  # a broken check is itself unhealthy
                problems = {"check": str(exc)}
            status = "503 Service Unavailable" if problems else "200 OK"
            answer: dict[str, Any] = {"ok": not problems, "problems": problems}
            if about is not None:
                try:
                    answer.update(about())
                except Exception as exc:
                    answer["about"] = f"unknown: {exc}"
            if degraded is not None:
                try:
                    answer["degraded"] = {k: v for k, v in degraded().items() if v}
                except Exception as exc:
                    answer["degraded"] = {"check": str(exc)}
            body = json.dumps(answer).encode()
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        if path == "/metrics":
            if refresh is not None:
                try:
                    refresh()
                except Exception as exc:
                    log.warning("metrics refresh failed: %s", exc)
            return list(metrics(environ, start_response))
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"/healthz or /metrics\n"]

    try:
        server = make_server(host, port, app, handler_class=QuietHandler)
    except OSError as exc:
        raise PortInUse(f"cannot serve /healthz on {host}:{port}: {exc.strerror}") from None
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info("health and metrics on http://%s:%d/healthz and /metrics", host, server.server_port)
    if role:
        _advertise(role, host, server.server_port)
    return server


def _run_dir() -> str:
    return os.environ.get("SWARMBOT_RUN_DIR") or tempfile.gettempdir()


def _advertise(role: str, host: str, port: int) -> None:
    """Write where this process's /healthz is, for ``swarmbot healthcheck``."""
    local = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 (a comparison)
    if ":" in local and not local.startswith("["):
        local = f"[{local}]"
    url = f"http://{local}:{port}/healthz"
    path = os.path.join(_run_dir(), f"swarmbot-{role}.health")
    try:
        with open(path, "w") as f:
            f.write(url)
    except OSError as exc:
        log.warning("cannot write %s for swarmbot healthcheck: %s", path, exc)
        return

    def remove() -> None:
        with contextlib.suppress(OSError), open(path) as f:
            if f.read() == url:
                os.unlink(path)

    atexit.register(remove)


def check_local(timeout: float = 4.0) -> tuple[bool, list[str]]:
    """Ask every swarmbot process on this machine (in a container: the one) for its health.

    Healthy only if at least one answers and all answer 200; the lines say who said what.
    """
    run_dir = _run_dir()
    try:
        names = sorted(n for n in os.listdir(run_dir) if n.startswith("swarmbot-"))
    except OSError:
        names = []
    files = [n for n in names if n.endswith(".health")]
    if not files:
        return False, [
            f"no swarmbot /healthz advertised in {run_dir}: is the process running, "
            "with [health] bot_port or worker_port set?"
        ]
    ok, lines = True, []
    for name in files:
        role = name.removeprefix("swarmbot-").removesuffix(".health")
        with open(os.path.join(run_dir, name)) as f:
            url = f.read().strip()
        if not url.startswith("http://"):
            ok = False
            lines.append(f"{role}: {name} holds no http:// URL")
            continue
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http://)
                try:
                    worse = json.loads(resp.read().decode()).get("degraded") or {}
                except ValueError:
                    worse = {}
                if worse:
                    what = "; ".join(str(v) for v in worse.values())
                    lines.append(f"{role}: healthy, degraded: {what}")
                else:
                    lines.append(f"{role}: healthy")
        except urllib.error.HTTPError as exc:
            ok = False
            try:
                problems = json.loads(exc.read().decode()).get("problems", {})
            except ValueError:
                problems = {}
            what = "; ".join(f"{k}: {v}" for k, v in problems.items()) or str(exc)
            lines.append(f"{role}: unhealthy: {what}")
        except (OSError, ValueError) as exc:
            ok = False
            lines.append(f"{role}: {url} does not answer: {exc}")
    return ok, lines
