"""From a chat message to an answer: parse, check policy, then answer or queue.

Policy sits here, in front of every command, deny by default: no command body runs, and
nothing is queued, unless the sender's stable ID has a role that allows the command (and
the stack it names). The worker checks again on its side.
"""

from __future__ import annotations

import logging

import redis

from bot.chat import Message, Reply
from bot.config import Config
from bot.jobs import Job
from bot.parsing import ParseError, parse
from bot.queue import JobQueue
from bot.roles import Policy
from commands import REGISTRY
from commands.base import Command, Context

log = logging.getLogger("swarmbot.dispatch")


class Dispatcher:
    def __init__(
        self, config: Config, queue: JobQueue, inbox: str, registry: dict[str, Command] = REGISTRY
    ) -> None:
        self.config = config
        self.queue = queue
        self.inbox = inbox
        self.policy = Policy(config.roles)
        self.registry = registry

    async def handle(self, message: Message) -> Reply | None:
        """The immediate answer to ``message``, or ``None`` if it was not a command."""
        parsed = parse(message.text, self.config.prefix, self.registry)
        if parsed is None:
            return None
        if isinstance(parsed, ParseError):
            return Reply(parsed.message, status="error")
        command, args = parsed.command, parsed.args
        decision = self.policy.may_run(message.user_id, command.name)
        stack = args.get(command.stack_param or "")
        if decision.allowed and stack == "all":
            decision = self.policy.may_touch_all(message.user_id, command.name)
        elif decision.allowed and stack:
            decision = self.policy.may_touch(message.user_id, command.name, stack)
        if not decision.allowed:
            log.info("refused %s from %s: %s", command.name, message.user_id, decision.reason)
            return Reply(f"refused: {decision.reason}", status="refused")
        if command.answer is not None:
            ctx = Context(message, self.config, self.policy, self.queue, self.registry)
            return await command.answer(ctx, args)
        assert command.job is not None
        op, job_args = command.job(args)
        reply_to = {"inbox": self.inbox, **message.ref}
        try:
            job = await self.queue.submit(
                op, job_args, message.user_id, message.text.strip(), reply_to
            )
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            log.error("queue unavailable: %s", exc)
            return Reply("queue unavailable, not queued; try again shortly", status="error")
        log.info("job %s queued: %s by %s", job.id, job.text, job.requester)
        return Reply(await self._queued_text(job, stack), status="queued", job=job.id)

    async def _queued_text(self, job: Job, stack: str | None) -> str:
        """ "queued as job 42", and what the user should know about when it will run."""
        text = f"queued as job {job.id}: {job.text}"
        try:
            holder = await self.queue.holder(stack) if stack and stack != "all" else None
            online = await self.queue.workers_online()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return text
        if holder:
            what = f"{holder.get('text')} by {holder.get('requester')}"
            text += f"; queued behind job {holder.get('id')} ({what})"
        if not online:
            minutes = max(1, self.config.job_ttl_seconds // 60)
            text += (
                f"; no worker is online right now: it runs when one comes back "
                f"(or expires unrun in {minutes} min)"
            )
        return text
