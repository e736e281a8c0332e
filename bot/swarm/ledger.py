"""The worker's own durable record of the jobs it has taken and the changes it applied.

Redis is shared infrastructure and the design does not trust it, yet replay protection
used to live only there: anyone able to write to Redis could delete a job's ``seen`` key
and ``applied:`` marks, put the captured signed entry back on the stream, and make the
worker run it again. This ledger lives on the worker's own volume (``queue.state_dir``),
which Redis cannot reach: a job, identified by the digest of its signed bytes, is taken in
one queue entry only, and a change it applied is never applied again, whatever Redis says.

SQLite (the standard library's ``sqlite3``) rather than a file of our own: it gives atomic,
crash-safe updates and concurrent access from the worker's threads and from a successor
process on the same volume, with nothing to install. Rows are kept until the job's signed
expiry (plus the allowed clock skew) has passed; after that the job is refused as expired
anyway, so nothing older needs remembering.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

FILE_NAME = "ledger.sqlite3"
KEEP_AFTER_EXPIRY = 3600.0  # well beyond jobs.CLOCK_SKEW


class LedgerError(Exception):
    """The state directory cannot hold the ledger (not writable, not a directory)."""


class Ledger:
    def __init__(self, state_dir: Path, prefix: str) -> None:
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(
                state_dir / FILE_NAME, check_same_thread=False, isolation_level=None, timeout=10
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash
            # SQLite's page cache is 2 MB by default; filled over the first few thousand
            # jobs, it read as a worker whose memory grows (make bench: +2.2 MB over 5,000
            # jobs). Lookups are by primary key: 256 KB keeps the tree's inner pages, and
            # the OS caches the file.
            self._db.execute("PRAGMA cache_size=-256")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS jobs (
                    prefix TEXT, digest TEXT, job TEXT, entry TEXT, expires REAL,
                    PRIMARY KEY (prefix, digest));
                CREATE TABLE IF NOT EXISTS applied (
                    prefix TEXT, digest TEXT, step TEXT, at REAL,
                    PRIMARY KEY (prefix, digest, step));
                """
            )
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"queue.state_dir {state_dir}: {exc}") from None
        self._prefix = prefix
        self._lock = threading.Lock()
        self.prune()

    def claim(self, digest: str, job_id: str, entry_id: str, expires: float) -> bool:
        """Record that queue entry ``entry_id`` carries the job with ``digest``. True the
        first time, and again for the same entry (a redelivery or a takeover); False when
        the same signed job comes back in another entry: a replay."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO jobs VALUES (?, ?, ?, ?, ?)",
                (self._prefix, digest, job_id, entry_id, expires),
            )
            if cur.rowcount == 1:
                return True
            row = self._db.execute(
                "SELECT entry FROM jobs WHERE prefix = ? AND digest = ?", (self._prefix, digest)
            ).fetchone()
        return row is not None and row[0] == entry_id

    def applied(self, digest: str, step: str) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT at FROM applied WHERE prefix = ? AND digest = ? AND step = ?",
                (self._prefix, digest, step),
            ).fetchone()
        return float(row[0]) if row else None

    def mark_applied(self, digest: str, step: str, at: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO applied VALUES (?, ?, ?, ?)",
                (self._prefix, digest, step, at),
            )

    def prune(self, now: float | None = None) -> None:
        """Forget jobs whose signed expiry is long past (they are refused as expired)."""
        cutoff = (now or time.time()) - KEEP_AFTER_EXPIRY
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "DELETE FROM applied WHERE (prefix, digest) IN "
                    "(SELECT prefix, digest FROM jobs WHERE expires < ?)",
                    (cutoff,),
                )
                self._db.execute("DELETE FROM jobs WHERE expires < ?", (cutoff,))
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()
