"""From a chat message to an answer: parse, then policy, then answer or queue.

Policy sits here, in front of every command, deny by default: no command body runs, and
nothing is queued, unless the sender's stable ID has a role that allows the command (and
the stack it names), the sender is within the rate limit, and a dangerous command has been
confirmed. Every decision is audited. The worker checks permissions again on its side.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from dataclasses import replace
from typing import Any

from bot.chat.alertmanager import Alertmanager
from bot.chat.parsing import Invocation, ParseError, parse
from bot.chat.timing import Timing, decide
from bot.core import health
from bot.core.alerting.api import AlertApi
from bot.core.config import Config
from bot.core.config.swarms import on_swarm
from bot.core.ids import matches_any, stacks_named_by
from bot.core.locks import ALL, blocking, refusal
from bot.core.policy import OPEN_COMMANDS, Decision, Policy
from bot.core.replies import Message, Reply, masked
from bot.core.schedule import WINDOW_ARG, say
from bot.core.sealed import Forged
from bot.core.wire import Job
from bot.queue.errors import StoreDown, WrongType
from bot.queue.producer import JobQueue, Queued
from commands import REGISTRY
from commands.base import Command, Context

log = logging.getLogger("swarmbot.dispatch")
REDIS_DOWN = StoreDown
# Besides Redis being down: a key it needs replaced with another type (ResponseError).
NOT_QUEUED: tuple[type[Exception], ...] = (*StoreDown, WrongType)
# Counting a refusal failed: the refusal is answered as usual (fail open).
UNCOUNTED: tuple[type[Exception], ...] = (*NOT_QUEUED, ValueError)
QUEUE_DOWN = "queue unavailable, not queued; try again shortly"


class Dispatcher:
    def __init__(
        self, config: Config, queue: JobQueue, inbox: str, registry: dict[str, Command] = REGISTRY
    ) -> None:
        self.config = config
        self.queue = queue
        self.inbox = inbox
        self.policy = Policy(config.roles)
        self.registry = registry
        self.confirmations = queue.confirmations(config.confirm_seconds)
        api_url = config.alerts.api_url if config.alerts is not None else ""
        self.alert_api: AlertApi | None = Alertmanager(api_url) if api_url else None
        # Matrix room aliases as the adapter resolved them (for the rooms of [swarms]).
        self.aliases: dict[str, str] = {}
        self._configs = {s.name: on_swarm(config, s.name) for s in config.swarms}

    def config_on(self, swarm: str) -> Config:
        """The config as ``swarm`` reads it (its ID, windows, variables); the whole config
        for a bot of one swarm."""
        return self._configs.get(swarm, self.config)

    async def handle(self, message: Message) -> Reply | None:
        """The immediate answer to ``message``, or ``None`` if it was not a command."""
        reply = await self._handle(message)
        return None if reply is None else masked(reply)

    async def _handle(self, message: Message) -> Reply | None:
        parsed = parse(message.text, self.config.prefix, self.registry, self.config.swarm_names)
        if parsed is None:
            return None
        if isinstance(parsed, ParseError):
            flooded, flood = await self._refusal_flood(message, "-")
            if flooded:
                return flood
            await self._audit(message, "invalid", reason=parsed.message)
            return Reply(parsed.message, status="error")
        command, args = parsed.command, parsed.args
        swarm = parsed.swarm or self.config.swarm_of_room(message.room, self.aliases)
        decision = self.authorize(message.user_id, command, args, swarm)
        if not decision.allowed:
            flooded, flood = await self._refusal_flood(message, command.name)
            if flooded:
                return flood
            log.info("refused %s from %s: %s", command.name, message.user_id, decision.reason)
            await self._audit(
                message,
                "refused",
                command.name,
                refusal=decision.kind,
                reason=decision.reason,
                swarm=swarm,
            )
            return Reply(f"refused: {decision.reason}", status="refused")
        timing = await self._when(message, parsed, swarm)
        if isinstance(timing, Reply):
            return timing
        job_args = dict(args)  # the job carries the parsed arguments
        if timing.override:
            job_args[WINDOW_ARG] = "now"
        stack = args.get(command.stack_param or "")
        confirm = timing.override or self._needs_confirmation(
            command, stack, job_args, message.user_id
        )
        queues = command.answer is None and not confirm
        limited, job_id = await self._rate_limited(message.user_id, take_job_id=queues)
        if limited:
            await self._audit(message, "rate-limited", command.name)
            return Reply(limited, status="refused")
        if confirm:
            return await self._ask_confirmation(
                message, command, job_args, stack, timing.not_before, swarm
            )
        if command.answer is not None:
            return await self._answer(message, command, args, swarm=swarm)
        text = message.text.strip()
        return await self.submit(
            message.user_id,
            command,
            job_args,
            text,
            message.ref,
            stack,
            message,
            job_id=job_id,
            not_before=timing.not_before,
            swarm=swarm,
        )

    async def _when(self, message: Message, parsed: Invocation, swarm: str) -> Timing | Reply:
        """When the command may run, or the refusal: a lock someone else holds on its
        stack, a time that cannot be, a closed deploy window."""
        command, args = parsed.command, parsed.args
        locked = await self._locked(message.user_id, command, args, swarm)
        if locked:
            await self._audit(
                message, "refused", command.name, refusal="locked", reason=locked, swarm=swarm
            )
            return Reply(f"refused: {locked}", status="refused")
        stack = self._stack_named(command, args)
        config = self.config_on(swarm)
        timing = decide(config, command, stack, parsed.schedule, parsed.window, time.time())
        if timing.refusal:
            await self._audit(
                message,
                "refused",
                command.name,
                refusal="when",
                reason=timing.refusal,
                swarm=swarm,
            )
            return Reply(f"refused: {timing.refusal}", status="refused")
        return timing

    @staticmethod
    def _stack_named(command: Command, args: dict[str, str]) -> str:
        """The stack a command names, by name or by a service's full name ("" if neither)."""
        stack = args.get(command.stack_param or "", "")
        if not stack:
            named = stacks_named_by(args.get("service", ""))
            stack = named[1] if len(named) == 2 else ""
        return stack

    async def _answer(
        self,
        message: Message,
        command: Command,
        args: dict[str, str],
        decision: str = "answered",
        swarm: str = "",
    ) -> Reply:
        """A command the bot answers itself (on ``swarm``: its locks, its identity), audited."""
        assert command.answer is not None
        ctx = Context(
            message,
            self.config_on(swarm),
            self.policy,
            self.queue.on(swarm),
            self.registry,
            self,
            self.alert_api,
        )
        try:
            reply = await command.answer(ctx, args)
        except REDIS_DOWN as exc:
            log.error("%s: queue unavailable: %s", command.name, exc)
            return Reply("queue unavailable; try again shortly", status="error")
        except Exception as exc:
            # Whatever a command did not foresee (a record of another type in Redis): a
            # short answer in chat, the traceback in the log only.
            log.exception("%s failed", command.name)
            return Reply(f"internal error: {type(exc).__name__} (see the log)", status="error")
        await self._audit(message, decision, command.name, swarm=swarm)
        tag = self.config.tag(swarm) if command.swarm_state else ""
        return replace(reply, text=tag + reply.text) if tag else reply

    async def _locked(self, user: str, command: Command, args: dict[str, str], swarm: str) -> str:
        """Why a change may not be made now, said at once ("" if it may): a lock on its
        stack that ``user`` does not hold. The worker checks again when the job takes the
        stack (a short service name is known to be in a stack only there)."""
        if command.notice is None:
            return ""  # changes nothing in a stack
        stack = self._stack_named(command, args)
        if not stack:
            return ""
        try:
            locks = await self.queue.on(swarm).locks().all()
        except REDIS_DOWN:
            return ""  # the worker checks too
        lock = blocking(locks, "" if stack == ALL else stack, user)
        return refusal(lock, stack, self.config.prefix) if lock is not None else ""

    def authorize(
        self, user: str, command: Command, args: dict[str, str], swarm: str = ""
    ) -> Decision:
        """Deny by default: a role that allows the command, holds on ``swarm`` and covers
        the stack named."""
        decision = self.policy.may_run(user, command.name)
        if decision.allowed and command.name not in OPEN_COMMANDS:
            decision = self.policy.may_use_swarm(user, swarm)
        policy = self.policy.on(swarm)
        if decision.allowed:
            decision = policy.may_run(user, command.name)
        stack = args.get(command.stack_param or "")
        if decision.allowed and stack == "all":
            decision = policy.may_touch_all(user, command.name)
        elif decision.allowed and stack:
            decision = policy.may_touch(user, command.name, stack)
        return decision

    async def submit(
        self,
        user: str,
        command: Command,
        job_args: dict[str, str],
        text: str,
        ref: dict[str, str],
        stack: str | None,
        message: Message,
        decision: str = "queued",
        job_id: str = "",
        not_before: float = 0.0,
        swarm: str = "",
    ) -> Reply:
        """Queue a job of ``command`` for ``swarm``'s worker; ``stack`` is the stack it
        names, if any; ``job_id`` one taken already (with the rate limit), else a new one
        is; ``not_before``: when it is due (0: now)."""
        op = command.name
        reply_to = {"inbox": self.inbox, **ref}
        if self.config.tag(swarm):
            reply_to["swarm"] = swarm  # its answers name it
        locked = stack if command.locks_stack and stack != "all" else None
        audit = self._audit_fields(message, decision, stack=stack)
        try:
            queued = await self.queue.on(swarm).submit(
                op,
                job_args,
                user,
                text,
                reply_to,
                audit,
                locked,
                job_id=job_id,
                read_only=command.read_only,
                not_before=not_before,
            )
        except NOT_QUEUED as exc:
            log.error("queue unavailable: %s", exc)
            await self._audit(message, "not-queued", op, reason=str(exc))
            return Reply(QUEUE_DOWN, status="error")
        job = queued.job
        health.COMMANDS.labels(op, decision.split(" ")[0]).inc()
        log.info("job %s queued: %s by %s", job.id, job.text, job.requester, extra={"job": job.id})
        if not queued.replicated:
            log.warning("job %s: no Redis replica has it", job.id, extra={"job": job.id})
            return Reply(self._unconfirmed(job), status="queued", job=job.id, waits=True)
        if job.not_before > job.created:
            return await self._scheduled(command, job, message, ref, swarm)
        text, waits = await self._queued_text(queued)
        return Reply(text, status="queued", job=job.id, waits=waits)

    def _unconfirmed(self, job: Job) -> str:
        """Written to the Redis master, but no replica acknowledged it in time: it runs
        unless that master dies before passing it on; the user is not told "queued"."""
        wait = self.config.redis_wait_ms / 1000
        return (
            f"job {job.id} ({job.text}) is written but not confirmed: no Redis replica has "
            f"it after {wait:g}s (Redis may be failing over), so it could still be lost; "
            f"{self.config.prefix}jobs shows whether it is there"
        )

    async def _scheduled(
        self, command: Command, job: Job, message: Message, ref: dict[str, str], swarm: str
    ) -> Reply:
        """Said at once; a scheduled deploy's pre-flight runs now too (``!check``), its
        answer in the same thread, and again when the deploy runs."""
        p = self.config.prefix
        when = say(job.not_before, job.created, self.config.timezone)
        on = f" on {swarm}" if self.config.tag(swarm) else ""
        text = (
            f"scheduled as job {job.id}{on} for {when}: {job.text}; {p}cancel {job.id} cancels it"
        )
        check = self.registry.get("check")
        if command.name == "deploy" and check is not None and job.args.get("stack") != "all":
            args = {k: v for k, v in job.args.items() if k in ("stack", "ref")}
            named = args["stack"] + (f"@{args['ref']}" if "ref" in args else "")
            await self.submit(
                job.requester,
                check,
                args,
                f"{p}check {named} (pre-flight of job {job.id})",
                ref,
                None,
                message,
                swarm=swarm,
            )
        return Reply(text, status="queued", job=job.id, waits=True)

    async def _queued_text(self, queued: Queued) -> tuple[str, bool]:
        """ "queued as job 42", and what the user should know about when it will run: behind
        another job's lock on the same stack (only a job that takes that lock waits for
        it), or behind busy workers (every slot taken), or no worker at all; and whether
        it waits for any of these."""
        job = queued.job
        on = f" on {job.swarm}" if self.config.tag(job.swarm) else ""
        text = f"queued as job {job.id}{on}: {job.text}"
        online, free, total = queued.workers
        holder = None
        if queued.holder and queued.holder != job.id:  # a worker may have taken it already
            with contextlib.suppress(*REDIS_DOWN):
                holder = await self.queue.record(queued.holder)
        if holder:
            what = f"{holder.get('text')} by {holder.get('requester')}"
            text += f"; queued behind job {holder.get('id')} ({what})"
        busy = bool(online and total and not free)
        if not holder and busy:
            text += f"; waiting for a free worker (all {total} job slots are busy)"
        if not online:
            minutes = max(1, self.config.job_ttl_seconds // 60)
            whose = f" of swarm {job.swarm}" if on else ""
            text += (
                f"; no worker{whose} is online right now: it runs when one comes back "
                f"(or expires unrun in {minutes} min)"
            )
        return text, bool(holder) or busy or not online

    # -- rate limits ----------------------------------------------------------------------

    async def _rate_limited(self, user: str, take_job_id: bool) -> tuple[str | None, str]:
        """A sliding one-minute window per user (no burst at a minute's edge): the refusal,
        if over it; else, with ``take_job_id``, the ID of the job about to be queued, in the
        same round trip. Refused commands do not count. Fails open when Redis is down:
        nothing can be queued then anyway, and help must keep working."""
        now = time.time()
        member = f"{now:.6f}-{secrets.token_hex(3)}"
        limit = self.config.rate_limit_per_minute
        try:
            ok, value = await self.queue.rate_window(user, now, member, limit, take_job_id)
        except StoreDown:
            return None, ""
        if ok:
            return None, value
        wait = max(1, int(float(value) + 60 - now + 0.999))
        return f"slow down: at most {limit} commands a minute; try again in {wait}s", ""

    async def _refusal_flood(self, message: Message, command: str) -> tuple[bool, Reply | None]:
        """Refused and invalid commands, limited per user (``safety.refusals_per_minute``):
        (False, None) within the limit (answer and audit as usual); the first one over it
        is told to slow down and audited once; after that, until the window frees up, they
        are dropped without an answer or an audit entry (True, None): a flood fills neither
        the room nor the trail. Counted in metrics either way."""
        limit = self.config.refusals_per_minute
        now = time.time()
        try:
            place = await self.queue.refusal_place(
                message.user_id, now, secrets.token_hex(4), limit
            )
        except UNCOUNTED:
            return False, None
        if place <= limit:
            return False, None
        health.REFUSALS.labels("flood").inc()
        if place > limit + 1:
            return True, None
        await self._audit(message, "rate-limited", command, reason="refusals flood")
        return True, Reply(
            f"slow down: more than {limit} refused or invalid commands in a minute; "
            "the next ones are ignored for up to a minute",
            status="refused",
        )

    # -- confirmations --------------------------------------------------------------------

    def _needs_confirmation(
        self, command: Command, stack: str | None, args: dict[str, str], user: str
    ) -> bool:
        """The command's name in ``safety.confirm``, or its dangerous form there:
        ``deploy all``, ``deploy --prune`` (removes services)."""
        name = command.name
        if command.always_confirm is not None and command.always_confirm(self.config, args, user):
            return True
        if name == "deploy" and stack == "all":
            name = "deploy all"
        elif name == "deploy" and args.get("option") == "--prune":
            name = "deploy --prune"
        return name in self.config.confirm

    def _needs_second(self, stack: str | None, args: dict[str, str]) -> bool:
        """Two people for every confirmed command on a two-approver stack: one that names
        the stack (``!undeploy dev``) or a service in it (``!rm dev_gerrit``)."""
        second = self.config.second_approver_stacks
        if stack:
            return matches_any(stack, second)
        named = args.get("service", "")
        return bool(named) and any(matches_any(s, second) for s in stacks_named_by(named))

    async def _ask_confirmation(
        self,
        message: Message,
        command: Command,
        job_args: dict[str, str],
        stack: str | None,
        not_before: float = 0.0,
        swarm: str = "",
    ) -> Reply:
        second = self._needs_second(stack, job_args)
        pending = {
            "swarm": swarm,
            "not_before": not_before,
            "user": message.user_id,
            "command": command.name,
            "args": job_args,
            "text": message.text.strip(),
            "ref": message.ref,
            "stack": stack or "",
            "confirmed": False,
            "approver": "",
            "second": second,
        }
        # A change that waits for a second person waits as long as approvals are valid.
        ttl = self.config.changes.approval_seconds if second else self.config.confirm_seconds
        try:
            code = await self.confirmations.ask(pending, ttl)
        except REDIS_DOWN:
            return Reply(QUEUE_DOWN, status="error")
        await self._audit(
            message, "confirmation-asked", command.name, reason=code, stack=stack, swarm=swarm
        )
        what = command.consequence(job_args)
        within = f"{ttl}s" if ttl < 3600 else f"{ttl // 3600}h"
        text = f"{what}. To go ahead, type {self.config.prefix}confirm {code} within {within}."
        if second:
            text += f" Someone else allowed to {command.name} {stack} must also confirm it."
        return Reply(text, status="info")

    async def confirm(self, message: Message, code: str) -> Reply:
        """``!confirm CODE``: the requester confirms; a second approver approves.

        Rights are checked again here, for both: the requester's may have been taken away
        since the code was given, and the confirmer's are what a confirmation lends. A
        code that fails either check answers like one that does not exist."""
        user = message.user_id
        try:
            pending = await self.confirmations.get(code)
        except REDIS_DOWN:
            return Reply(QUEUE_DOWN, status="error")
        except Forged as exc:
            # Written into Redis by someone else: answered like a missing code, and kept.
            log.warning("confirmation %s refused: %s", code.upper(), exc)
            await self._audit(message, "rejected", "confirm", reason=f"forged code: {exc}")
            pending = None
        # One answer for "no such code" and "not yours to confirm": a code says nothing about
        # a command to someone who has no say over it.
        unknown = Reply(
            f"no pending command with code {code.upper()} that you can confirm (codes expire "
            f"after {self.config.confirm_seconds}s)",
            status="error",
        )
        command = self.registry.get(pending.get("command", "")) if pending else None
        swarm = str(pending.get("swarm") or "") if pending else ""
        if pending is None or command is None or not self._known_swarm(swarm):
            return unknown
        args = dict(pending["args"])
        if not self.authorize(user, command, args, swarm).allowed:
            return unknown
        refusal = self._take_part(pending, user, message.ref, code)
        if refusal is not None:
            return refusal if refusal.text else unknown
        if not self.authorize(pending["user"], command, args, swarm).allowed:
            return unknown  # the requester lost the right since: nobody can lend it back
        if not pending["confirmed"] or (pending["second"] and not pending["approver"]):
            await self.confirmations.update(code, pending)
            waiting = (
                "a second approver" if pending["confirmed"] else f"{pending['user']} to confirm"
            )
            await self._audit(
                message,
                "approved" if user != pending["user"] else "confirmed",
                pending["command"],
                reason=code,
                stack=pending["stack"],
            )
            return Reply(
                f"noted; {pending['text']} now waits for {waiting} "
                f"({self.config.prefix}confirm {code.upper()})"
            )
        if not await self.confirmations.take(code):
            return Reply(f"{pending['text']} was already confirmed", status="error")
        original = Message(
            message.platform, pending["user"], message.room, pending["text"], pending["ref"]
        )
        note = f" (approved by {pending['approver']})" if pending["approver"] else ""
        if command.answer is not None:
            answered = await self._answer(
                original, command, args, f"confirmed by {user}{note}", swarm
            )
            return replace(answered, text=f"confirmed: {answered.text}{note}")
        reply = await self.submit(
            pending["user"],
            command,
            args,
            pending["text"],
            pending["ref"],
            pending["stack"] or None,
            original,
            decision=f"confirmed by {user}{note}",
            not_before=_due(pending.get("not_before")),
            swarm=swarm,
        )
        if reply.status == "queued":
            return replace(reply, text=f"confirmed: {reply.text}{note}")
        return reply

    def _known_swarm(self, swarm: str) -> bool:
        """A pending confirmation's swarm (sealed, yet read with care) is one of [swarms];
        a bot of one swarm knows only ""."""
        return swarm in self.config.swarm_names if self.config.swarms else swarm == ""

    def _take_part(
        self, pending: dict[str, Any], user: str, ref: dict[str, str], code: str
    ) -> Reply | None:
        """Record ``user``'s part in a pending confirmation (in ``pending``): None when it
        counts; else the refusal, or an empty one for "answer as for an unknown code"."""
        if pending.get("anyone"):
            # A change the watcher proposed (changes.policy "confirm"): anyone allowed to run
            # the deploy confirms it, and a second, different one approves where needed.
            if not pending["confirmed"]:
                pending.update(user=user, confirmed=True, ref=ref)
            elif pending["second"] and user != pending["user"]:
                return self._approve(pending, user)
            else:
                return Reply(
                    f"you confirmed {pending['text']} already; it waits for someone else "
                    f"to approve it ({self.config.prefix}confirm {code.upper()})",
                    status="error",
                )
        elif user == pending["user"]:
            pending["confirmed"] = True
        elif not pending["second"]:
            return Reply("")
        else:
            return self._approve(pending, user)
        return None

    def _approve(self, pending: dict[str, Any], user: str) -> Reply | None:
        """Record ``user`` as the second approver, if a role of theirs approves the stack
        (``approves``) where roles name its approvers; else the refusal."""
        stacks = [pending["stack"]] if pending["stack"] else []
        if not stacks:
            stacks = list(stacks_named_by(str(pending["args"].get("service", ""))))
        wrong = [s for s in stacks if not self.policy.may_approve(user, s)]
        if wrong:
            return Reply(
                f"you may not approve changes to {wrong[0]}: only roles whose `approves` "
                "names it do",
                status="refused",
            )
        pending["approver"] = user
        return None

    async def _audit(
        self,
        message: Message,
        decision: str,
        command: str = "-",
        refusal: str = "",
        **fields: Any,
    ) -> None:
        """Count and record a decision; ``command`` is the parsed command's name (no re-parse),
        ``refusal`` the policy's kind of refusal (a fixed label, never the English text)."""
        health.COMMANDS.labels(command, decision.split(" ")[0]).inc()
        if decision in ("refused", "rate-limited", "invalid"):
            health.REFUSALS.labels(refusal or decision).inc()
        await self.queue.audit(**self._audit_fields(message, decision, **fields))

    def _audit_fields(self, message: Message, decision: str, **fields: Any) -> dict[str, Any]:
        if not self.config.tag(fields.get("swarm") or ""):
            fields.pop("swarm", None)  # named only where there are several
        return {
            "who": message.user_id,
            "platform": message.platform,
            "where": message.room,
            "command": message.text.strip()[:200],
            "decision": decision,
            **fields,
        }


def _due(value: Any) -> float:
    """A pending confirmation's ``not_before`` (sealed, yet read with care)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
