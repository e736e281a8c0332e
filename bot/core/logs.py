"""Logging set-up: human-readable lines by default, JSON lines with ``--log-format json``.

Every line logged while a job is being handled carries the job's id, without each call
site passing it: the worker and the bot set ``job_context(id)`` around a job's handling and
a filter copies it onto the records. A context variable is per thread (the worker's pool)
and per asyncio task (the bot), so concurrent jobs never borrow each other's id.

The JSON formatter is the standard library's ``json`` in a dozen lines rather than
python-json-logger: we need our own field (the job id) and a fixed set of keys that log
pipelines can rely on, and one more dependency in the image buys nothing here.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator

from bot.core.scrub import masker

FORMATS = ("text", "json")

_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("swarmbot_job", default=None)


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Tag every log line inside the block with ``job_id``."""
    token = _job.set(job_id)
    try:
        yield
    finally:
        _job.reset(token)


class _JobFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job"):
            record.job = _job.get()
        return True


class TextFormatter(logging.Formatter):
    """``2026-11-26 17:40:01,123 INFO swarmbot.worker [job 41]: deployed dev``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(job_tag)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        job = getattr(record, "job", None)
        record.job_tag = f" [job {job}]" if job else ""
        return masker().text(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and job
    when there is one; ``extra={"fields": {...}}`` adds structured fields (audit entries)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job = getattr(record, "job", None)
        if job:
            out["job"] = job
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if k not in out})
        out = {
            k: v if isinstance(v, str | int | float | dict | list) else str(v)
            for k, v in out.items()
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(masker().data(out), ensure_ascii=False, default=str)


class Once:
    """Logs a recurring problem once, and again only when it changes or after it cleared:
    a loop that retries every second must not write the same warning every second."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._last = ""

    def warning(self, message: str, *args: object) -> None:
        text = message % args if args else message
        if text != self._last:
            self._last = text
            self._log.warning("%s (told once until it changes)", text)

    def clear(self) -> None:
        self._last = ""


def setup(level: str, fmt: str = "text") -> None:
    """Configure the root logger for one of ``FORMATS``, writing to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_JobFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # matrix-nio logs every event it parses at INFO (145 lines at start-up with two rooms):
    # its own chatter only when debugging.
    if root.level > logging.DEBUG:
        logging.getLogger("nio").setLevel(logging.WARNING)
