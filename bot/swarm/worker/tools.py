"""The swarm operations that command handlers compose (``bot.core.operations.WorkerTools``).

Each is written once here and used by every command that needs it: resolving a service
the requester may act on, a stack's lock, applying a change exactly once, watching a
change converge, the pre-flight check, a deploy.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import docker.errors
import requests.exceptions

from bot.core import health, waves
from bot.core.config import Config
from bot.core.ids import (
    COMMIT_LABEL,
    PREVIOUS_COMMIT_LABEL,
    matches_any,
    resolve_service,
    stack_of,
    stacks_named_by,
)
from bot.core.operations import Answer, JobCancelled, JobFailed, Progress, StackSource
from bot.core.policy import Policy
from bot.core.replies import plural
from bot.core.scrub import env_values, masker
from bot.core.wire import ChangeData, DeployReport, Job, OutcomeData, ProblemData
from bot.swarm import dockercli, hostaccess, nodes, preflight, updates
from bot.swarm.convergence import Assessment, describe_task, failing_task
from bot.swarm.engine import Swarm
from bot.swarm.gitsource import Commit, GitError
from bot.swarm.placement import hostname
from bot.swarm.preflight import Problem
from bot.swarm.worker.lifecycle import HandedOver, Slot, WorkerState, short

log = logging.getLogger("swarmbot.worker")

FAILURE_LOG_LINES = 5
LOCK_POLL_SECONDS = 0.5


class SwarmTools:
    """``WorkerTools`` for one worker process."""

    def __init__(self, state: WorkerState) -> None:
        self.state = state
        self.config: Config = state.config
        self.policy: Policy = state.policy
        self.engine: Swarm = state.engine
        self.queue = state.queue
        self.ledger = state.ledger
        self.notices = state.notices
        self._cli: dockercli.DockerCli | None = None

    @property
    def consumer(self) -> str:
        return self.queue.consumer

    @property
    def cli(self) -> dockercli.DockerCli:
        if self._cli is None:
            self._cli = dockercli.DockerCli.find(
                self.config.docker_cli, self.config.docker_cli_timeout
            )
            log.info("using docker CLI %s (version %s)", self._cli.path, self._cli.version)
        return self._cli

    # -- permissions and names -------------------------------------------------------

    def allow(self, job: Job, stack: str) -> None:
        decision = self.policy.may_touch(job.requester, job.command, stack)
        if not decision.allowed:
            raise JobFailed(decision.reason)

    def resolve(self, job: Job) -> dict[str, Any]:
        """The service a job names, by the rules in ``ids.resolve_service``."""
        # Only services the requester may act on are candidates: ambiguity lists and "did
        # you mean" suggestions must not name services of stacks hidden from them.
        by_name = {
            s["Spec"]["Name"]: s
            for s in self.engine.services()
            if self.policy.may_touch(
                job.requester, job.command, stack_of(s["Spec"].get("Labels"))
            ).allowed
        }
        typed = job.args["service"]
        found = resolve_service(typed, list(by_name))
        if found.match is None:
            if found.ambiguous:
                raise JobFailed(f"`{typed}` is ambiguous: {', '.join(found.candidates)}")
            hint = f"; did you mean: {', '.join(found.candidates)}" if found.candidates else ""
            raise JobFailed(f"no service `{typed}`{hint}")
        service = by_name[found.match]
        stack = stack_of(service["Spec"].get("Labels"))
        self.allow(job, stack)
        self._second_approver_seen(job, stack, found.match)
        return service

    def _second_approver_seen(self, job: Job, stack: str, name: str) -> None:
        """A confirmed command on a service of a two-approver stack must have been seen as
        one by the bot, which asks for the second approval: a short name (``gerrit``) does
        not show its stack, so such a job is refused with the name that would."""
        second = self.config.second_approver_stacks
        if not (stack and job.op in self.config.confirm and matches_any(stack, second)):
            return
        if any(matches_any(s, second) for s in stacks_named_by(job.args["service"])):
            return
        raise JobFailed(
            f"{name} is in {stack}, where two people must approve {job.op}: "
            f"ask again with its full name ({self.config.prefix}{job.op} {name})"
        )

    # -- one service -------------------------------------------------------------------

    def change_service(
        self,
        job: Job,
        service: dict[str, Any],
        progress: Progress,
        apply: Callable[[], object],
        rollback: bool = False,
    ) -> Answer:
        """Apply one change to one service (once), then watch it converge."""
        name = service["Spec"]["Name"]
        stack = stack_of(service["Spec"].get("Labels"))
        with self.stack_turn(stack or name, job, progress), self.claim([name], job):
            since = self.apply_once(job, job.op, apply)
            outcomes = self.engine.watch(
                [service["ID"]],
                since,
                time.monotonic() + self.config.deploy_deadline_seconds,
                on_progress=lambda a: progress({"stack": "", "services": _progress_rows(a)}),
                rollback=rollback,
            )
        [outcome] = self._explain(outcomes, [service["ID"]])
        ok = outcome["state"] == "converged"
        data = {"service": name, "stack": stack, "outcome": outcome}
        return Answer(ok, data, f"{name}: {outcome['state']}")

    # -- nodes -------------------------------------------------------------------------

    def change_node(
        self, job: Job, name: str, availability: str, progress: Progress, force: bool = False
    ) -> Answer:
        """Set a node's availability (once); a drain is checked first (services that would
        lose placement stop it, unless forced) and watched until the node's tasks have
        moved, or shown stuck with swarm's reason."""
        every = self.engine.nodes()
        node = nodes.find(every, name)
        if node is None:
            known = ", ".join(sorted(hostname(n) for n in every))
            raise JobFailed(f"no node `{name}` (nodes: {known})")
        host, node_id = hostname(node), node["ID"]
        current = (node.get("Spec") or {}).get("Availability", "active")
        data: dict[str, Any] = {"node": host, "availability": availability, "was": current}
        if current == availability:
            return Answer(True, {**data, "unchanged": True}, f"{host} was already {current}")
        impact: list[nodes.Impact] = []
        if availability == "drain":
            running = self.engine.tasks(**{"desired-state": "running"})
            services = self.engine.services()
            impact = nodes.drain_impact(node, every, services, running)
            # Names only for those who may see them: services of stacks the requester's
            # roles do not cover are counted, not named.
            stacks = {s["Spec"]["Name"]: stack_of(s["Spec"].get("Labels")) for s in services}
            shown = [
                i for i in impact if self.policy.may_see(job.requester, stacks.get(i.service, ""))
            ]
            data["impact"] = [asdict(i) for i in shown]
            blocked = [i for i in impact if not i.placeable]
            data["hidden"] = len(blocked) - sum(not i.placeable for i in shown)
            if blocked and not force:
                data["refused"] = True
                return Answer(False, data, f"{host} not drained: {len(blocked)} would lose tasks")
        # The job tells the change, not the watcher: expected before it is made.
        self.state.wait_for_redis(lambda: self.notices.expect(node_id, availability))
        self.apply_once(
            job, f"{job.op}:{node_id}", lambda: self.engine.set_availability(node_id, availability)
        )
        if availability == "drain":
            data.update(self._watch_drain(node_id, host, impact, progress))
        ok = not data.get("stuck") and not data.get("left")
        return Answer(ok, data, f"{host} {availability}" + ("" if ok else ": tasks stuck"))

    def _watch_drain(
        self, node_id: str, host: str, impact: list[nodes.Impact], progress: Progress
    ) -> dict[str, Any]:
        """Until the node runs nothing and each service it ran is placed again or stuck:
        where their tasks went, and what swarm could not place, with its reason."""
        deadline = time.monotonic() + self.config.deploy_deadline_seconds
        names = {i.service for i in impact if not i.message.startswith("global")}
        every = {hostname(n): n for n in self.engine.nodes()}
        hosts = {n["ID"]: h for h, n in every.items()}
        while True:
            tasks = self.engine.tasks(**{"desired-state": "running"})
            left = nodes.running_here(tasks, node_id)
            services = {s["ID"]: s for s in self.engine.services(status=True)}
            moved, stuck = [], []
            for sid, service in services.items():
                name = service["Spec"]["Name"]
                if name not in names:
                    continue
                mine = [t for t in tasks if t.get("ServiceID") == sid]
                failing = failing_task(mine, time.time())
                status = service.get("ServiceStatus") or {}
                if failing is not None:
                    stuck.append({"service": name, "reason": describe_task(failing)})
                elif int(status.get("RunningTasks", 0)) >= int(status.get("DesiredTasks", 0)):
                    where = sorted(
                        {
                            hosts.get(t.get("NodeID", ""), "?")
                            for t in mine
                            if t["Status"].get("State") == "running"
                        }
                    )
                    moved.append({"service": name, "to": where})
            progress({"node": host, "left": len(left), "moved": len(moved), "of": len(names)})
            settled = not left and len(moved) + len(stuck) == len(names)
            if settled or time.monotonic() > deadline:
                return {"moved": moved, "stuck": stuck, "left": len(left)}
            self.state.stop.wait(0.5)

    def rollback_service(self, service_id: str) -> None:
        dockercli.rollback(self.cli, service_id)

    def log_tail(self, service_id: str, lines: int) -> list[str]:
        try:
            mask = masker().with_values(env_values(self.engine.service_env(service_id)))
            return [mask.text(line)[:300] for line in self.engine.logs(service_id, lines)]
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            return [f"(logs unavailable: {short(exc)})"]

    def _explain(self, outcomes: list[OutcomeData], service_ids: list[str]) -> list[OutcomeData]:
        """Counts the outcomes; a service that did not converge gets its last log lines
        (secrets masked), which usually say why."""
        for outcome, sid in zip(outcomes, service_ids, strict=False):
            health.DEPLOYS.labels(outcome["state"]).inc()
            if outcome["state"] != "converged":
                outcome["logs"] = self.log_tail(sid, FAILURE_LOG_LINES)
        return outcomes

    # -- stacks ------------------------------------------------------------------------

    def source(self, ref: str | None = None) -> StackSource:
        git = self.state.git
        if git is None:
            if ref:
                raise JobFailed(
                    f"`@{ref}` needs stacks from git, and no [git] repository is configured: "
                    "stacks come from the stacks directory"
                )
            return StackSource(self.config.stacks_dir)
        stale = ""
        try:
            git.fetch()
        except GitError as exc:
            # The repository is down: what was fetched before still deploys (a rollback is
            # most needed exactly then), and every answer says so.
            if not git.ready():
                raise JobFailed(str(exc)) from None
            log.warning("git unreachable, using the last fetch: %s", exc)
            stale = f"git unreachable: {exc}"
        try:
            sha = git.resolve(ref or git.config.branch)
            commit = commit_data(git.commit(sha))
            return StackSource(git.tree(sha), commit, stale)
        except GitError as exc:
            raise JobFailed(f"{exc}; {stale}" if stale else str(exc)) from None

    def stack_files(self, source: StackSource | None = None) -> dict[str, Path]:
        return dockercli.stack_files((source or self.source()).folder)

    def stack_file(
        self, stack: str, source: StackSource | None = None, requester: str = ""
    ) -> Path:
        """The stack's file: a regular file in the folder (never a symlink) within
        ``deploy.max_stack_file_bytes``. The names offered when there is none are those the
        ``requester`` may see (all, for the worker's own watchers)."""
        source = source or self.source()
        files = self.stack_files(source)
        if stack not in files:
            shown = [f for f in files if not requester or self.policy.may_see(requester, f)]
            known = ", ".join(shown) or "none"
            where = f"at {source.commit['short']}" if source.commit else "in the stacks directory"
            if f"{stack}.yaml" in dockercli.refused_files(source.folder):
                raise JobFailed(
                    f"{stack}.yaml {where} is not a regular file (symlinks are refused)"
                )
            raise JobFailed(f"no stack file `{stack}` {where} (known: {known})")
        try:
            dockercli.check_size(files[stack], self.config.max_stack_file_bytes)
        except dockercli.DeployError as exc:
            raise JobFailed(str(exc)) from None
        return files[stack]

    def preflight(
        self, stack: str, source: StackSource | None = None, requester: str = ""
    ) -> tuple[dict[str, Any] | None, list[ProblemData], str]:
        file = self.stack_file(stack, source, requester)
        rendered, problems, note = self._check_file(stack, file)
        return rendered, [_problem(p) for p in problems], note

    def stack_commits(self, stacks: list[str], source: StackSource) -> dict[str, dict[str, Any]]:
        git = self.state.git
        if git is None or not source.commit:
            return {}
        head = source.commit["sha"]
        labels: dict[str, dict[str, set[str]]] = {}
        for service in self.engine.services():
            spec_labels = service["Spec"].get("Labels") or {}
            stack = stack_of(spec_labels)
            for key in (COMMIT_LABEL, PREVIOUS_COMMIT_LABEL):
                if spec_labels.get(key):
                    labels.setdefault(stack, {}).setdefault(key, set()).add(spec_labels[key])
        out: dict[str, dict[str, Any]] = {}
        for stack in stacks:
            found = labels.get(stack, {})
            shas = sorted(found.get(COMMIT_LABEL, set()))
            if not shas:
                continue
            info: dict[str, Any] = {"branch": git.config.branch, "mixed": len(shas) > 1}
            try:
                info["commit"] = commit_data(git.commit(shas[0]))
                behind = git.log(shas[0], head, stack)
                info["behind"] = [commit_data(c) for c in behind[:3]]
                info["behind_count"] = len(behind)
                previous = sorted(found.get(PREVIOUS_COMMIT_LABEL, set()))
                if previous:
                    info["previous"] = commit_data(git.commit(previous[0]))
            except GitError as exc:
                info["error"] = str(exc)
            out[stack] = info
        return out

    def diff(self, stack: str, rendered: dict[str, Any]) -> list[ChangeData]:
        return preflight.diff(stack, rendered, self.engine.services(stack))

    def deploy_plan(self, source: StackSource) -> tuple[list[str], dict[str, set[str]]]:
        needs = preflight.deploy_needs(self.stack_files(source), self.config.deploy_first)
        try:
            return preflight.order_of(needs, self.config.deploy_first), needs
        except preflight.OrderError as exc:
            raise JobFailed(str(exc)) from None

    def deploy_stacks(
        self, needs: dict[str, set[str]], job: Job, progress: Progress, source: StackSource
    ) -> tuple[dict[str, DeployReport], dict[str, str]]:
        """Deploy every stack in ``needs`` once the stacks it needs are deployed, each under
        its own lock with its own outcome; one progress line for them all."""
        digest = getattr(self.state.current, "digest", "")
        lock = threading.Lock()
        running: dict[str, str] = {}  # stack -> what it is at ("2/3 services", "waiting ...")
        done: list[str] = []

        def step(stack: str) -> DeployReport:
            # The job's ledger key, which apply_once reads from the running thread.
            self.state.current.digest = digest

            def on_progress(data: dict[str, Any]) -> None:
                with lock:
                    running[stack] = _stack_progress(data)
                    merged = {"deploying": dict(running), "done": list(done)}
                progress(merged)

            with lock:
                running[stack] = "starting"
            try:
                return self.deploy_stack(stack, job, on_progress, source=source)
            finally:
                with lock:
                    running.pop(stack, None)
                    done.append(stack)

        return waves.run(needs, step, lambda report: report["ok"])

    def _check_file(
        self, stack: str, file: Path
    ) -> tuple[dict[str, Any] | None, list[Problem], str]:
        """Render and check a stack file: (rendered or None, problems, note)."""
        try:
            rendered = dockercli.render(self.cli, file, self.config.variables)
        except dockercli.NoRender as exc:
            return None, [], f"no pre-flight check: {exc}"
        except dockercli.DeployError as exc:
            return None, [Problem("", "file", str(exc), True)], ""
        main, *override = dockercli.compose_files(file)
        problems = [
            p
            for extra in override
            for p in preflight.unset_variables(
                extra.read_text(encoding="utf-8"), self.config.variables
            )
        ]
        problems += preflight.check(
            stack,
            main.read_text(encoding="utf-8"),
            rendered,
            file.parent,
            self.config.variables,
            self.engine.snapshot(),
        )
        if not matches_any(stack, self.config.host_access_stacks):
            problems += [
                Problem(
                    name,
                    key,
                    f"{why}; refused unless {stack} is in security.host_access_stacks",
                    True,
                )
                for name, spec in sorted((rendered.get("services") or {}).items())
                for key, why in hostaccess.findings(spec or {})
            ]
        return rendered, problems, ""

    def deploy_stack(
        self,
        stack: str,
        job: Job,
        progress: Progress,
        force: bool = False,
        prune: bool = False,
        source: StackSource | None = None,
    ) -> DeployReport:
        source = source or self.source()
        file = self.stack_file(stack, source, job.requester)
        base = DeployReport(stack=stack, ok=False, error="", outcomes=[], problems=[], note="")
        if source.commit:
            base["commit"] = dict(source.commit)
        with self.stack_turn(stack, job, progress), self.claim([stack], job):
            started = time.monotonic()
            rendered, problems, note = self._check_file(stack, file)
            base["problems"] = [_problem(p) for p in problems]
            stale = f"deployed as last fetched ({source.stale})" if source.stale else ""
            base["note"], base["cli"] = "; ".join(n for n in (note, stale) if n), self.cli.version
            if any(p.error for p in problems):
                return {
                    **base,
                    "error": "the pre-flight check found problems; nothing was deployed",
                }
            current = self.engine.services(stack)
            labels = commit_labels(source, current)
            override = (
                preflight.hash_override(stack, rendered, labels) if rendered is not None else None
            )
            gone: list[dict[str, Any]] = []
            if rendered is not None:
                changes = preflight.diff(stack, rendered, current)
                lost = {c["service"] for c in changes if c["change"] == preflight.REMOVED}
                gone = [s for s in current if s["Spec"]["Name"] in lost]
                if not prune:  # named, left running
                    changes = [c for c in changes if c["service"] not in lost]
                    if lost:
                        base["orphans"] = sorted(lost)
                base["changes"] = changes
                first_try = self.queue.applied(job.id, f"deploy:{stack}") is None
                if current and not changes and not force and first_try:
                    return {**base, "ok": True, "unchanged": True}
            try:
                since = self.apply_once(
                    job,
                    f"deploy:{stack}",
                    lambda: dockercli.deploy(
                        self.cli,
                        stack,
                        file,
                        self.config.variables,
                        self.config.resolve_image,
                        override,
                        prune=prune,
                    ),
                )
            except dockercli.DeployError as exc:
                return {**base, "error": masker().text(str(exc))}
            if prune and gone:
                base["removed"] = sorted(s["Spec"]["Name"] for s in gone)
                base["volumes_kept"] = sorted({v for s in gone for v in volumes_of(s)})
            ids = [s["ID"] for s in self.engine.services(stack)]
            outcomes = self.engine.watch(
                ids,
                since,
                started + self.config.deploy_deadline_seconds,
                on_progress=lambda a: progress(
                    {"stack": stack, "services": _progress_rows(a), "total": len(ids)}
                ),
            )
        return {
            **base,
            "ok": all(o["state"] == "converged" for o in outcomes),
            "outcomes": self._explain(outcomes, ids),
            # Since the change was applied, even if an earlier worker applied it (a job
            # taken over after `!deploy swarmbot` replaced its worker).
            "seconds": round(max(time.monotonic() - started, time.time() - since), 1),
        }

    def remove_service(self, job: Job, service: dict[str, Any], progress: Progress) -> Answer:
        name = service["Spec"]["Name"]
        stack = stack_of(service["Spec"].get("Labels"))
        volumes = volumes_of(service)
        with self.stack_turn(stack or name, job, progress), self.claim([name], job):
            self.apply_once(
                job, f"rm:{name}", lambda: dockercli.remove_service(self.cli, service["ID"])
            )
            deadline = time.monotonic() + self.config.deploy_deadline_seconds
            while any(s["Spec"]["Name"] == name for s in self.engine.services(stack or None)):
                if time.monotonic() > deadline:
                    raise JobFailed(f"{name} still there after the deadline")
                self.state.stop.wait(LOCK_POLL_SECONDS)
        data = {"service": name, "stack": stack, "volumes": volumes}
        return Answer(True, data, f"{name} removed, {plural(len(volumes), 'volume')} kept")

    def undeploy(self, job: Job, stack: str, progress: Progress) -> dict[str, Any]:
        with self.stack_turn(stack, job, progress), self.claim([stack], job):
            services = sorted(s["Spec"]["Name"] for s in self.engine.services(stack))
            if not services and self.queue.applied(job.id, f"undeploy:{stack}") is None:
                raise JobFailed(f"stack `{stack}` is not deployed")
            volumes = self.engine.stack_volumes(stack)
            self.apply_once(job, f"undeploy:{stack}", lambda: dockercli.remove(self.cli, stack))
            deadline = time.monotonic() + self.config.deploy_deadline_seconds
            while self.engine.services(stack):
                if time.monotonic() > deadline:
                    raise JobFailed(f"services of {stack} still there after the deadline")
                self.state.stop.wait(LOCK_POLL_SECONDS)
        return {"stack": stack, "services": services, "volumes": volumes}

    def image_updates(self, job: Job, stack: str | None) -> dict[str, Any]:
        services = [
            s
            for s in self.engine.services(stack)
            if self.policy.may_touch(
                job.requester, job.command, stack_of(s["Spec"].get("Labels"))
            ).allowed
        ]
        registry = self.state.registry
        before = registry.requests
        found = updates.check(registry, services, self.config.registry.semver_for)
        return {
            "images": [
                {
                    "image": n.image,
                    "running": n.running,
                    "current": n.current,
                    "newer": n.newer,
                    "moved": n.moved,
                    "services": n.services,
                    "error": n.error,
                }
                for n in found
            ],
            "services": len(services),
            "requests": registry.requests - before,
        }

    # -- the guarantees every change shares --------------------------------------------

    @contextlib.contextmanager
    def stack_turn(self, stack: str, job: Job, progress: Progress) -> Iterator[None]:
        """One job per stack at a time, across all workers (a lease in Redis, renewed by the
        heartbeat, so a dead worker's stack frees itself). A waiting job says what it waits
        behind, can be cancelled, and gives up when the job's time to live runs out."""
        told = False
        slot: Slot | None = getattr(self.state.current, "slot", None)
        while (holder := self.queue.try_lock(stack, job.id)) is not None:
            if not told:
                told = True
                if slot is not None:
                    slot.give_back()  # waiting is not working: let other jobs run meanwhile
                record = self.queue.record(holder)
                what = (
                    f"{record.get('text', '?')} by {record.get('requester', '?')}"
                    if record
                    else "?"
                )
                log.info("waits for job %s on %s", holder, stack)
                self.queue.start(job.id, "waiting")
                progress({"waiting": f"queued behind job {holder} ({what})"})
            if self.queue.record(job.id).get("state") == "cancelled":
                raise JobCancelled(
                    f"cancelled by {self.queue.record(job.id).get('cancelled_by')} while waiting"
                )
            if time.time() > job.expires:
                raise JobFailed(f"gave up waiting for job {holder} on {stack}")
            if self.state.stop.is_set():
                raise HandedOver
            self.state.stop.wait(LOCK_POLL_SECONDS)
        self.state.held[stack] = job.id
        if told:
            try:
                if slot is not None:
                    slot.take(self.state.stop)
            except HandedOver:
                self.state.held.pop(stack, None)
                self.state.wait_for_redis(lambda: self.queue.unlock(stack, job.id))
                raise
            self.queue.start(job.id)
        try:
            yield
        finally:
            self.state.held.pop(stack, None)
            self.state.wait_for_redis(lambda: self.queue.unlock(stack, job.id))

    @contextlib.contextmanager
    def claim(self, names: list[str], job: Job) -> Iterator[None]:
        """While a job changes these stacks or services, the notice watcher leaves them to it;
        what the job produced or removed is left to it afterwards too."""
        self.notices.claim(names, job.id, self.config.deploy_deadline_seconds + 120)
        before = self._claimed_services(names)
        try:
            yield
        finally:
            after = self._claimed_services(names)
            removed: set[str] = set()
            if before is not None and after is not None:
                removed = {s["ID"] for s in before} - {s["ID"] for s in after}
            self.state.wait_for_redis(lambda: self.notices.release(names, after or [], removed))

    def _claimed_services(self, names: list[str]) -> list[dict[str, Any]] | None:
        """The services named, or in the stacks named; None if Docker does not answer."""
        try:
            return [
                s
                for s in self.engine.services(status=True)
                if s["Spec"]["Name"] in names or stack_of(s["Spec"].get("Labels")) in names
            ]
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return None

    def apply_once(self, job: Job, step: str, apply: Callable[[], object]) -> float:
        """Run a job's side effect unless a previous attempt (a worker that died after it)
        already did; returns when it was applied, from when convergence is judged."""
        digest = getattr(self.state.current, "digest", "") or job.id
        # Applied if either record says so: the ledger survives an attacker clearing Redis,
        # Redis tells a worker that takes over from another (whose ledger it cannot see).
        done = self.ledger.applied(digest, step) or self.queue.applied(job.id, step)
        if done is not None:
            log.info("%s was already applied; watching it converge", step)
            return done
        at = time.time()
        apply()
        self.ledger.mark_applied(digest, step, at)
        self.queue.mark_applied(job.id, step, at)
        return at


def commit_data(commit: Commit) -> dict[str, Any]:
    return {
        "sha": commit.sha,
        "short": commit.short,
        "subject": commit.subject[:120],
        "author": commit.author[:80],
        "time": commit.time,
    }


def _deployed_commit(services: list[dict[str, Any]]) -> str | None:
    """The commit a stack's services carry (any one: they are deployed together)."""
    for service in services:
        sha = (service["Spec"].get("Labels") or {}).get(COMMIT_LABEL)
        if sha:
            return str(sha)
    return None


def commit_labels(source: StackSource, current: list[dict[str, Any]]) -> dict[str, str]:
    """The labels a deploy from git puts on every service: the commit, and the one the
    stack ran before it (what ``!rollback <stack>`` returns to)."""
    if not source.commit:
        return {}
    sha, was = source.commit["sha"], _deployed_commit(current)
    labels = {COMMIT_LABEL: sha}
    if was and was != sha:
        labels[PREVIOUS_COMMIT_LABEL] = was
    else:
        for service in current:
            previous = (service["Spec"].get("Labels") or {}).get(PREVIOUS_COMMIT_LABEL)
            if previous:
                labels[PREVIOUS_COMMIT_LABEL] = previous
                break
    return labels


def volumes_of(service: dict[str, Any]) -> list[str]:
    """The named volumes a service mounts (bind mounts are host paths, not volumes)."""
    mounts = ((service["Spec"].get("TaskTemplate") or {}).get("ContainerSpec") or {}).get(
        "Mounts"
    ) or []
    return sorted({m["Source"] for m in mounts if m.get("Type") == "volume" and m.get("Source")})


def _stack_progress(data: dict[str, Any]) -> str:
    """One stack's part of the ``!deploy all`` progress line."""
    if "waiting" in data:
        return str(data["waiting"])
    rows = data.get("services") or []  # the services still watched: done ones drop out
    total = int(data.get("total", len(rows)))
    whole = total - len(rows) + sum(1 for r in rows if r["state"] == "converged")
    return f"{whole}/{plural(total, 'service')} converged"


def _progress_rows(assessments: list[Assessment]) -> list[dict[str, Any]]:
    return [
        {"name": a.name, "running": a.running, "desired": a.desired, "state": a.state}
        for a in assessments
    ]


def _problem(problem: Problem) -> ProblemData:
    return ProblemData(
        service=problem.service, key=problem.key, message=problem.message, error=problem.error
    )
