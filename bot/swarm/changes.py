"""What a change found outside the swarm does, by the stack's policy (``changes.policy``):
``notify`` tells the rooms how to apply it, ``confirm`` also leaves a confirmation code
that any authorised person may give (a second, different one where
``safety.second_approver_stacks`` says so), ``auto`` queues the deploy itself.

Everything a proposal writes (the notice, the pending approval or the job, and the
watcher's own "already told" state) goes into the caller's one Redis transaction: a
watcher that dies half way has told nothing, and one that comes back tells it once.

A pending approval is the bot's ordinary confirmation entry in Redis, with a longer life
(``changes.approval_seconds``): it outlives restarts of the bot and of every worker.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

from bot.core.config import AUTOMATION_USER, Config
from bot.core.ids import matches_any
from bot.core.locks import blocking, refusal
from bot.core.schedule import window_refusal
from bot.core.wire import Job
from bot.queue.consumer import Batch, WorkerQueue
from bot.swarm.notices import Notices

log = logging.getLogger("swarmbot.changes")

AUTOMATION_INBOX = "automation"  # where a policy job's answer goes: its notice tells it


@dataclass(frozen=True)
class Proposal:
    """A change that a deploy would apply: to whom it is told, and the deploy that applies it."""

    stack: str
    headline: str  # "main changed dev.yaml (abc1234 by Bob: Bump gerrit)"
    detail: tuple[str, ...]
    args: dict[str, str]  # the deploy job's arguments: {"stack": "dev", "ref": sha}; {}: none
    command: str  # how chat spells that deploy: "!deploy dev@abc1234"
    key: str  # what makes two proposals the same (a notice id)


class ChangePolicy:
    def __init__(self, config: Config, queue: WorkerQueue, notices: Notices) -> None:
        self.config = config
        self.queue = queue
        self.notices = notices

    def policy_for(self, stack: str) -> str:
        return self.config.changes.policy_for(stack)

    def blocked(self, stack: str) -> str:
        """Why a change to ``stack`` from git or the registry must wait now ("" if not):
        someone holds a lock on it, or (policy auto) its deploy windows are closed: an auto
        change waits for the next window rather than being skipped."""
        locks = self.queue.lock_store(self.config.signing_secret).all()
        lock = blocking(locks, stack, AUTOMATION_USER)
        if lock is not None:
            return refusal(lock, stack, self.config.prefix)
        if self.policy_for(stack) == "auto":
            config = self.config
            return window_refusal(config.windows, config.timezone, stack, time.time())
        return ""

    def release_held(self) -> int:
        """Propose again the changes that waited, for the stacks nothing holds any more
        (told again, and applied by policy); how many."""
        held = self.queue.held_changes(self.config.signing_secret)
        released = 0
        for stack, raw in held.all().items():
            try:
                proposal = Proposal(**{**raw, "detail": tuple(raw.get("detail", ()))})
            except TypeError:
                log.warning("held change for %s is malformed; dropped", stack)
                with self.queue.batch() as pipe:
                    held.drop(stack, pipe)
                continue
            if proposal.stack != stack or self.blocked(stack):
                continue
            with self.queue.batch() as pipe:
                held.drop(stack, pipe)
                self.propose(proposal, pipe)
            released += 1
        return released

    def propose(self, proposal: Proposal, pipe: Batch) -> str:
        """Tell (and by policy, ask for or queue) the deploy; returns the policy applied.
        A change to a stack someone has locked waits, told so, until the lock goes."""
        why = self.blocked(proposal.stack) if proposal.args else ""
        if why:
            held = self.queue.held_changes(self.config.signing_secret)
            held.put(proposal.stack, asdict(proposal), pipe)
            headline = f"{proposal.headline}: waits ({proposal.command}): {why}"
            self.notices.post(
                proposal.stack, headline, list(proposal.detail), f"{proposal.key}-held", pipe=pipe
            )
            return "held"
        policy = self.policy_for(proposal.stack)
        if not any(matches_any(proposal.stack, r.stacks) for r in self.config.notice_routes):
            log.warning(
                "no [[notices.route]] for %s: its change (%s) is told to nobody",
                proposal.stack,
                proposal.command,
            )
        stack, detail = proposal.stack, list(proposal.detail)
        if policy == "auto":
            job_id = self.queue.next_job_id()
            now = time.time()
            text = f"{proposal.command} (policy auto)"
            job = Job(
                job_id,
                "deploy",
                proposal.args,
                AUTOMATION_USER,
                text,
                {"inbox": AUTOMATION_INBOX},
                now,
                now + self.config.job_ttl_seconds,
                swarm=self.config.swarm,
            )
            self.queue.submit(job, _audit(text, "queued by policy auto", stack), pipe)
            headline = f"{proposal.headline}: deploying it (policy auto, job {job_id})"
            self.notices.post(stack, headline, detail, proposal.key, pipe=pipe)
            return policy
        if policy == "confirm":
            second = matches_any(stack, self.config.second_approver_stacks)
            pending = {
                "user": "",
                "anyone": True,  # any person allowed to deploy the stack confirms it
                "command": "deploy",
                "args": proposal.args,
                "text": proposal.command,
                "ref": {},
                "stack": stack,
                "confirmed": False,
                "approver": "",
                "second": second,
            }
            ttl = self.config.changes.approval_seconds
            # Sealed like the bot's own: the bot refuses a confirmation it cannot verify.
            code = self.queue.ask_approval(pending, ttl, pipe)
            asked = _audit(proposal.command, "confirmation-asked", stack, reason=code)
            self.queue.audit(asked, pipe)
            who = " (two different people must confirm)" if second else ""
            hours = max(1, ttl // 3600)
            headline = (
                f"{proposal.headline}: {self.config.prefix}confirm {code} deploys it"
                f"{who} (valid {hours}h; {proposal.command})"
            )
            self.notices.post(stack, headline, detail, proposal.key, pipe=pipe)
            return policy
        headline = f"{proposal.headline}: {proposal.command} to apply"
        self.notices.post(stack, headline, detail, proposal.key, pipe=pipe)
        return policy


def _audit(command: str, decision: str, stack: str, **more: str) -> dict[str, str]:
    """The audit fields of what the watcher decided on its own, by policy."""
    return {
        "who": AUTOMATION_USER,
        "platform": "watcher",
        "where": "-",
        "command": command,
        "decision": decision,
        "stack": stack,
        **more,
    }
