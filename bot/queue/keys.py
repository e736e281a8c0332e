"""Every Redis key swarmbot uses, in one place, under the configured prefix.

A key spelled out anywhere else is a bug: two spellings of one key drift apart, and an
operator inspecting Redis needs one list of what is there.
"""

from __future__ import annotations

from dataclasses import dataclass

WORKER_GROUP = "workers"
BOT_GROUP = "bot"
RECENT_JOBS_KEPT = 500
HEARTBEAT_SECONDS = 1.0
RETIRED_IDLE_MS = 2000  # see consumer.WorkerQueue.reclaim
LOCK_LEASE_MS = 30_000
RECORD_TTL = 7 * 86400
INBOX_MAXLEN = 10_000
INBOX_TTL = 7 * 86400


@dataclass(frozen=True)
class Keys:
    """The keys under ``prefix``. Those of one swarm (its queue, workers, stack turns and
    locks, watchers, schedule, identity) are under ``<prefix>:on:<swarm>`` when the bot
    serves several swarms (``swarm`` set); with one swarm they are where they always were.
    Jobs' IDs, records, the audit trail, inboxes and everything of the chat side are the
    bot's, shared by all swarms: `!jobs`, `!cancel 42` and `!audit` need no swarm."""

    prefix: str
    swarm_name: str = ""

    @property
    def space(self) -> str:
        """The root of this swarm's own keys."""
        return f"{self.prefix}:on:{self.swarm_name}" if self.swarm_name else self.prefix

    def on(self, swarm: str) -> Keys:
        """The keys of ``swarm`` ("" for a bot of one swarm)."""
        return Keys(self.prefix, swarm)

    @property
    def volumes(self) -> str:
        """Volume -> the nodes it has been used on (``bot.queue.volumestore``)."""
        return f"{self.space}:volumes"

    @property
    def jobs(self) -> str:
        return f"{self.space}:jobs"

    @property
    def job_seq(self) -> str:
        return f"{self.prefix}:job-seq"

    @property
    def recent(self) -> str:
        return f"{self.prefix}:recent"

    @property
    def rejected(self) -> str:
        return f"{self.prefix}:rejected"

    def record(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def inbox(self, name: str) -> str:
        return f"{self.prefix}:inbox:{name}"

    def seen(self, job_id: str) -> str:
        return f"{self.prefix}:seen:{job_id}"

    @property
    def workers(self) -> str:
        return f"{self.space}:workers"

    @property
    def load(self) -> str:
        """Per worker: "busy capacity", its working jobs and its concurrency."""
        return f"{self.space}:worker-load"

    def lock(self, stack: str) -> str:
        return f"{self.space}:lock:{stack}"

    @property
    def audit(self) -> str:
        return f"{self.prefix}:audit"

    @property
    def audit_refused(self) -> str:
        """Refusals, invalid commands and rejected entries: a stream of their own, capped
        on its own, so a flood of them never pushes real decisions out of ``audit``."""
        return f"{self.prefix}:audit:refused"

    def refusals(self, user: str) -> str:
        """A user's sliding one-minute window of refused and invalid commands."""
        return f"{self.prefix}:refusals:{user}"

    # -- the chat side ---------------------------------------------------------------

    def rate(self, user: str) -> str:
        """A user's sliding one-minute window of commands."""
        return f"{self.prefix}:rate:{user}"

    def confirmation(self, code: str) -> str:
        return f"{self.prefix}:confirm:{code.upper()}"

    def adapter(self, platform: str) -> str:
        """The root of one chat adapter's own keys (sync token, handled events, progress
        messages): ``<prefix>:matrix:...``, ``<prefix>:slack:...``."""
        return f"{self.prefix}:{platform}"

    # -- the notice watcher (worker side) ---------------------------------------------

    def watch(self, what: str) -> str:
        """The source watcher's: ``leader``, ``pokes`` (webhooks wake it), ``git-head``,
        ``drift`` (stack -> what was told), ``image:<ref>@<digest>`` (a tag move told)."""
        return f"{self.space}:watch:{what}"

    def webhook(self, digest: str) -> str:
        """A push delivery already taken (its body's digest): a replay is refused."""
        return f"{self.prefix}:webhook:{digest}"

    def swarm(self, what: str) -> str:
        """``accepted`` (the swarm served, sealed), ``found`` (worker -> its daemon)."""
        return f"{self.space}:swarm:{what}"

    def change(self, stack: str) -> str:
        """The last change a job made to ``stack`` (sealed), for alerts to name."""
        return f"{self.space}:change:{stack}"

    @property
    def scheduled(self) -> str:
        """Jobs that wait for their time (``!deploy dev at 22:00``): a sorted set, job ID
        by the time it is due; each job's signed entry in ``scheduled_entry``."""
        return f"{self.space}:scheduled"

    def scheduled_entry(self, job_id: str) -> str:
        return f"{self.space}:scheduled:{job_id}"

    def locks(self) -> str:
        """Stack locks: a hash, stack (or "all") -> the lock, sealed."""
        return f"{self.space}:locks"

    def held(self) -> str:
        """Changes proposed from git or the registry that wait for a lock or a window:
        a hash, stack -> the proposal, sealed."""
        return f"{self.space}:held"

    def alerts(self, what: str) -> str:
        """The alert receiver's: ``group:<hash>`` (a group's story, sealed),
        ``new:<room hash>:<minute>`` (new messages in a room this minute)."""
        return f"{self.prefix}:alerts:{what}"

    def notice(self, what: str) -> str:
        """``state``, ``pending``, ``leader``, ``refreshes``, ``claim:<name>``,
        ``expected:<service id>``."""
        return f"{self.space}:notice:{what}"
