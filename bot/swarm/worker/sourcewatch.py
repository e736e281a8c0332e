"""The source watcher: tells when git or a registry is ahead of the swarm, or the swarm has
drifted from git. One worker at a time runs it (a lease in Redis, like the notice watcher).

It wakes when a push webhook pokes it (the bot verifies the webhook and pushes a word onto
a Redis list), and otherwise every ``git.poll_seconds``: polling is the fallback, so a
lost webhook delays a change, never hides it. A webhook is only a wake-up call: what
changed is read from git itself after a fetch, never from the webhook's body.

- **git**: the branch's head against the head it last examined (kept in Redis). Every
  stack whose files changed in between becomes one proposal, handled by the stack's policy
  (``bot.swarm.changes``), in one transaction with the new head: told once, even across
  restarts.
- **drift**: every stack deployed from git is compared with its file at the commit its
  services carry (the same diff as ``!diff``); a difference is told once (until it
  changes or goes away), with the diff. Stacks a job is changing are left alone.
- **images**: every ``registry.poll_seconds``, the digests the services run against the
  ones their tags point to; a tag that moved is told once per new digest, by policy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any

import docker.errors
import requests.exceptions

from bot.core.config import Config
from bot.core.ids import COMMIT_LABEL, stack_of
from bot.core.operations import StackSource
from bot.core.replies import plural
from bot.queue.errors import StoreError, StoreTimeout
from bot.swarm import preflight, updates
from bot.swarm.changes import ChangePolicy, Proposal
from bot.swarm.gitsource import Commit, GitError
from bot.swarm.notices import DRIFT_POKE
from bot.swarm.worker.lifecycle import WorkerState
from bot.swarm.worker.stackfiles import commit_data
from bot.swarm.worker.tools import SwarmTools

log = logging.getLogger("swarmbot.sources")

DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)
DRIFT_SECONDS_MAX = 15.0
WAKE_SECONDS = 2.0  # one blocking wait for a poke: inside clients.SOCKET_TIMEOUT
RENDERED_KEPT = 256  # (stack, commit) renders: a few per stack


class SourceWatcher:
    def __init__(self, state: WorkerState, tools: SwarmTools) -> None:
        self.state = state
        self.tools = tools
        self.config: Config = state.config
        self.queue = state.queue
        self.keys = state.queue.keys
        self.policy = ChangePolicy(state.config, state.queue, state.notices)
        self.store = state.queue.watch_store()
        self.lease = state.queue.lease(self.keys.watch("leader"))
        self._rendered: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._next_poll = 0.0
        self._next_images = 0.0

    @staticmethod
    def wanted(config: Config) -> bool:
        return config.git is not None or config.registry.poll_seconds > 0

    def start(self) -> list[threading.Thread]:
        """Start the watcher's thread; returns it, for the worker's health check."""
        thread = threading.Thread(target=self._loop, name="source-watch", daemon=True)
        thread.start()
        return [thread]

    def resign(self) -> None:
        self.lease.give_up()

    # -- the loop ----------------------------------------------------------------------------

    def _wake(self, seconds: float) -> bool | None:
        """Wait up to ``seconds`` for a word on the pokes list: None if none came, else
        whether one was a push (not only the drift check's). Each wait is at most
        ``WAKE_SECONDS``, well inside the client's socket timeout (redis-py 8 defaults to
        5 s, and a longer BLPOP failed with a timeout every time, so no push was seen)."""
        words = self.store.wait_for_poke(min(WAKE_SECONDS, max(0.05, seconds)))
        if words is None:
            return None
        return any(word != DRIFT_POKE for word in words)

    def _wait_seconds(self) -> float:
        waits = [DRIFT_SECONDS_MAX, self.config.notice_poll_seconds]
        if self.config.git and self.config.git.poll_seconds:
            waits.append(self.config.git.poll_seconds)
        if self.config.registry.poll_seconds:
            waits.append(self.config.registry.poll_seconds)
        return max(0.2, min(waits))

    def _loop(self) -> None:
        stop = self.state.stop
        next_look = 0.0  # a look at once, then every _wait_seconds or when woken
        while not stop.is_set():
            try:
                if self.state.wrong_swarm.is_set():
                    stop.wait(1.0)  # another swarm than the one served: nothing to compare
                elif self.lease.held():
                    # A webhook's word (or the notice watcher's: a stack from git changed),
                    # or the time to look anyway.
                    woken = self._wake(max(0.0, next_look - time.monotonic()))
                    if woken is None and time.monotonic() < next_look:
                        continue
                    if self.lease.held():
                        self.look(bool(woken))
                    next_look = time.monotonic() + self._wait_seconds()
                else:
                    stop.wait(self._wait_seconds())
            except StoreTimeout:
                continue  # a wake-up that timed out is no error: look when it is time
            except StoreError as exc:
                log.warning("source watcher: redis unavailable (%s)", exc)
                stop.wait(1.0)
            except DOCKER_ERRORS as exc:
                log.warning("source watcher: docker unavailable (%s)", exc)
                stop.wait(1.0)
            except Exception:  # the watcher must outlive any one bad look
                log.exception("source watcher: look failed")
                stop.wait(1.0)

    def look(self, poked: bool = False) -> None:
        now = time.monotonic()
        git = self.config.git
        if git is not None and (poked or now >= self._next_poll):
            self._next_poll = now + (git.poll_seconds or 10**9)
            self.check_git()
        if git is not None:
            self.check_drift()
        if self.config.registry.poll_seconds and now >= self._next_images:
            self._next_images = now + self.config.registry.poll_seconds
            self.check_images()
        # Changes that waited for a lock (or a window): proposed again once free.
        self.policy.release_held()
        # For operators and tests; a counter overwritten by someone is set aside.
        self.store.count_look()

    # -- git ---------------------------------------------------------------------------------

    def check_git(self) -> None:
        git = self.state.git
        assert git is not None
        try:
            head = git.fetch()
        except GitError as exc:
            log.warning("git fetch failed: %s", exc)
            return
        seen = self.store.git_head()
        if seen == head:
            return
        if not seen:
            self.store.set_git_head(head)  # the first look only learns where the branch is
            log.info("git: watching %s from %s", git.config.branch, head[:7])
            return
        try:
            changed = git.changed_stacks(seen, head)
        except GitError as exc:  # the old head is gone (a force-push and a gc): start over
            log.warning("git: cannot compare with %s (%s); watching from %s", seen, exc, head)
            self.store.set_git_head(head)
            return
        # The head's files, once for every stack that changed.
        last = git.commit(head)
        source = StackSource(git.tree(head), commit_data(last))
        present = self.tools.files.stack_files(source)
        proposals = [
            self._proposal(stack, files, seen, last, source, stack in present)
            for stack, files in changed.items()
        ]
        with self.queue.batch() as pipe:
            for proposal in proposals:
                if proposal.args:
                    self.policy.propose(proposal, pipe)
                else:  # nothing to deploy: told, whatever the policy
                    self.state.notices.post(
                        proposal.stack, proposal.headline, [], proposal.key, pipe=pipe
                    )
            self.store.set_git_head(head, pipe)
        log.info(
            "git: %s moved %s -> %s; %d stack(s) changed",
            git.config.branch,
            seen[:7],
            head[:7],
            len(changed),
        )

    def _proposal(
        self,
        stack: str,
        files: list[str],
        old: str,
        head_commit: Commit,
        source: StackSource,
        present: bool,
    ) -> Proposal:
        git = self.state.git
        assert git is not None
        head = head_commit.sha
        commits = git.log(old, head, stack)
        last = commits[0] if commits else head_commit
        branch = git.config.branch
        names = ", ".join(f.split(" ")[0] for f in files)
        by = f"{last.short} by {last.author}: {last.subject[:80]}"
        more = f", {len(commits)} commits" if len(commits) > 1 else ""
        if not present:  # no args: told, never deployed
            said = f"{branch} removed {names} ({by}): {self.config.prefix}undeploy {stack} "
            said += "removes the stack (its volumes stay)"
            return Proposal(stack, said, (), {}, "", f"git-{stack}-{head}")
        detail = list(files) + self._service_diff(stack, source)
        return Proposal(
            stack=stack,
            headline=f"{branch} changed {names} ({by}{more})",
            detail=tuple(detail),
            args={"stack": stack, "ref": head},
            command=f"{self.config.prefix}deploy {stack}@{head[:7]}",
            key=f"git-{stack}-{head}",
        )

    def _service_diff(self, stack: str, source: StackSource) -> list[str]:
        """What the deploy would change, per service (as ``!diff`` says it)."""
        try:
            rendered, _problems, note = self.tools.files.preflight(stack, source)
            if rendered is None:
                return [note] if note else []
            changes = self.tools.files.diff(stack, rendered)
        except Exception as exc:  # the notice goes out without the diff
            log.warning("diff of %s failed: %s", stack, exc)
            return []
        return [f"{c['service']}: {c['change']}: {'; '.join(c['details'])}"[:200] for c in changes]

    # -- drift -------------------------------------------------------------------------------

    def check_drift(self) -> None:
        git = self.state.git
        assert git is not None
        if not git.ready():
            return
        by_stack: dict[str, list[dict[str, Any]]] = {}
        for service in self.state.engine.services():
            stack = stack_of(service["Spec"].get("Labels"))
            if stack:
                by_stack.setdefault(stack, []).append(service)
        told = self.store.drift_told()
        everything = [*by_stack, *(s["Spec"]["Name"] for ss in by_stack.values() for s in ss)]
        held = self.state.notices.claimed_among(everything)
        for stack, services in by_stack.items():
            shas = {(s["Spec"].get("Labels") or {}).get(COMMIT_LABEL) for s in services}
            names = {stack, *(s["Spec"]["Name"] for s in services)}
            if len(shas) != 1 or None in shas or names & held:
                continue  # not from git, mid-deploy, or a job holds it: not drift
            sha = str(next(iter(shas)))
            rendered = self._rendered_at(stack, sha)
            if rendered is None:
                continue
            changes = preflight.diff(stack, rendered, services)
            at = f"{stack}@{sha[:7]}"
            # What was done by hand, then what the undo does (the diff's own direction).
            lines = [f"{c['service']}: {preflight.by_hand(c)} (by hand)"[:200] for c in changes]
            lines += [
                f"{self.config.prefix}deploy {at} would: {c['service']}: {c['change']}: "
                f"{'; '.join(c['details'])}"[:200]
                for c in changes
            ]
            digest = hashlib.sha256(json.dumps(lines).encode()).hexdigest()[:16] if lines else ""
            was_sha, _, was = told.get(stack, "").partition(":")
            if digest == was:
                continue
            by_name = {s["Spec"]["Name"]: s for s in services}
            differing = [by_name.get(c["service"]) for c in changes]
            bots = bool(differing) and all(
                s is not None and self.state.notices.made_by_bot(s) for s in differing
            )
            with self.queue.batch() as pipe:
                if bots:  # a bot job's change (`!scale`): its job told it; taken in silently
                    self.store.set_drift_told(stack, f"{sha}:{digest}", pipe)
                    continue
                if not lines and was_sha == sha:  # undone by hand: told, as the drift was
                    text = f"{stack} matches its file at {sha[:7]} again"
                    self.state.notices.post(
                        stack, text, [], f"drift-{stack}-{sha}-gone", pipe=pipe
                    )
                if lines:
                    text = (
                        f"{stack} has drifted from its file at {sha[:7]}: "
                        f"{plural(len(changes), 'service')} changed by hand; "
                        f"{self.config.prefix}diff {at} shows it, "
                        f"{self.config.prefix}deploy {at} puts it back"
                    )
                    self.state.notices.post(
                        stack, text, lines, f"drift-{stack}-{digest}", pipe=pipe
                    )
                    self.store.set_drift_told(stack, f"{sha}:{digest}", pipe)
                else:
                    self.store.set_drift_told(stack, None, pipe)

    def _rendered_at(self, stack: str, sha: str) -> dict[str, Any] | None:
        """The stack's file at ``sha``, rendered once per commit (the last few kept)."""
        if (stack, sha) not in self._rendered:
            if len(self._rendered) > RENDERED_KEPT:
                self._rendered.pop(next(iter(self._rendered)))
            git = self.state.git
            assert git is not None
            try:
                source = StackSource(git.tree(sha), commit_data(git.commit(sha)))
                rendered: dict[str, Any] | None = self.tools.files.render(stack, source)
            except Exception as exc:
                log.warning("drift: cannot render %s at %s: %s", stack, sha[:7], exc)
                rendered = None
            self._rendered[(stack, sha)] = rendered
        return self._rendered[(stack, sha)]

    # -- images ------------------------------------------------------------------------------

    def check_images(self) -> None:
        services = self.state.engine.services()
        found = updates.check(self.state.registry, services, self.config.registry.semver_for)
        for news in found:
            if not news.moved:
                continue
            if self.store.image_told(news.image, news.current):
                continue
            with self.queue.batch() as pipe:
                for stack, mine in news.by_stack.items():
                    text = (
                        f"{news.image} moved in its registry "
                        f"({news.running.removeprefix('sha256:')[:12]} -> "
                        f"{news.current.removeprefix('sha256:')[:12]}), run by {', '.join(mine)}"
                    )
                    if not stack:  # a service outside any stack: told, never deployed
                        self.state.notices.post("", text, [], f"image-{news.image}", pipe=pipe)
                        continue
                    self.policy.propose(
                        Proposal(
                            stack=stack,
                            headline=text,
                            detail=(),
                            args={"stack": stack, "option": "--force"},
                            command=f"{self.config.prefix}deploy {stack} --force",
                            key=f"image-{news.image}-{news.current}",
                        ),
                        pipe,
                    )
                self.store.set_image_told(news.image, news.current, pipe)
