"""The composed operations command handlers share (``bot.core.operations.WorkerTools``):
resolving a service the requester may act on, changing one service and watching it
converge, changing a node's availability, deploying a stack; with the smaller blocks they
are built from (``turns``, ``files``, ``cli``, ``engine``) handed to handlers as well.

A command's own logic lives in its file (``commands/<name>.py``); what is here is used by
several commands, or by a command and the source watcher.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

import docker.errors
import requests.exceptions

from bot.core import health
from bot.core.config import Config
from bot.core.doctor import Finding
from bot.core.ids import hostname, matches_any, resolve_service, stack_of, stacks_named_by
from bot.core.locks import Lock
from bot.core.operations import Answer, JobFailed, JobRun, ServiceChange, StackSource
from bot.core.policy import Policy
from bot.core.scrub import env_values, masker
from bot.core.services import ServiceView
from bot.core.whereabouts import Whereabouts
from bot.core.wire import DeployReport, Job, OutcomeData
from bot.swarm import dockercli, nodes, preflight, updates, volumes
from bot.swarm.convergence import Assessment, describe_task, failing_task
from bot.swarm.engine import Swarm
from bot.swarm.worker.identity import SwarmIdentity, worker_findings
from bot.swarm.worker.lifecycle import WorkerState, short
from bot.swarm.worker.stackcli import StackCliOps
from bot.swarm.worker.stackfiles import SwarmStackFiles, as_problem_data, commit_labels
from bot.swarm.worker.turns import SwarmTurns

log = logging.getLogger("swarmbot.worker")

FAILURE_LOG_LINES = 5
DRAIN_POLL_SECONDS = 0.5


class SwarmTools:
    """``WorkerTools`` for one worker process."""

    def __init__(self, state: WorkerState, identity: SwarmIdentity | None = None) -> None:
        self.state = state
        self.identity = identity or SwarmIdentity(state)
        self.config: Config = state.config
        self.policy: Policy = state.policy
        self.engine: Swarm = state.engine
        self.queue = state.queue
        self.cli = StackCliOps(state.config)
        self.turns = SwarmTurns(state)
        self.files = SwarmStackFiles(state, self.cli)

    @property
    def consumer(self) -> str:
        return self.queue.consumer

    def whereabouts(self) -> Whereabouts:
        """As the worker last looked (at its start, then every ``SWARM_CHECK_SECONDS``): a
        job that only asks where the worker acts costs no Docker call."""
        if self.identity.where is None:
            self.identity.check()
        assert self.identity.where is not None
        return self.identity.where

    # -- permissions and names -------------------------------------------------------

    def allow(self, job: Job, stack: str) -> None:
        decision = self.policy.may_touch(job.requester, job.command, stack)
        if not decision.allowed:
            raise JobFailed(decision.reason)

    def locks(self) -> dict[str, Lock]:
        secret = self.state.config.signing_secret
        return self.state.wait_for_redis(lambda: self.state.queue.lock_store(secret).all())

    def visible(self, job: Job, services: list[dict[str, Any]]) -> list[dict[str, Any]]:
        allowed: dict[str, bool] = {}  # per stack: many services, few stacks
        for stack in {stack_of(s["Spec"].get("Labels")) for s in services}:
            allowed[stack] = self.policy.may_touch(job.requester, job.command, stack).allowed
        return [s for s in services if allowed[stack_of(s["Spec"].get("Labels"))]]

    def resolve(self, job: Job) -> ServiceView:
        """The service a job names, by the rules in ``ids.resolve_service``."""
        # Only services the requester may act on are candidates: ambiguity lists and "did
        # you mean" suggestions must not name services of stacks hidden from them. An exact
        # name wins, so one the requester may see is found by itself; anything else needs
        # every service (a short name, a typo: one list call). A name without a stack
        # prefix is most often short (`gerrit`): listed at once, no inspect first.
        typed = job.args["service"]
        exact = self.engine.service_named(typed) if "_" in typed else None
        visible = self.visible(job, [exact]) if exact is not None else []
        candidates = visible or self.visible(job, self.engine.services())
        by_name = {s["Spec"]["Name"]: s for s in candidates}
        found = resolve_service(typed, list(by_name))
        if found.match is None:
            if found.ambiguous:
                raise JobFailed(f"`{typed}` is ambiguous: {', '.join(found.candidates)}")
            hint = f"; did you mean: {', '.join(found.candidates)}" if found.candidates else ""
            raise JobFailed(f"no service `{typed}`{hint}")
        service = ServiceView.of(by_name[found.match])
        self.allow(job, service.stack)
        self._second_approver_seen(job, service.stack, service.name)
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

    def change_service(self, run: JobRun, service: ServiceView, change: ServiceChange) -> Answer:
        """Apply one change to one service (once), then watch it converge."""
        name, stack = service.name, service.stack
        with self.turns.stack_turn(stack or name, run), self.turns.claim([name], run):
            since = self.turns.apply_once(run, run.job.op, lambda: self._apply(service, change))
            outcomes = self.engine.watch(
                [service.id],
                since,
                time.monotonic() + self.config.deploy_deadline_seconds,
                on_progress=lambda a: run.progress({"stack": "", "services": _progress_rows(a)}),
                rollback=change.kind == "rollback",
            )
        [outcome] = self._explain(outcomes, [service.id])
        ok = outcome["state"] == "converged"
        data = {"service": name, "stack": stack, "outcome": outcome}
        return Answer(ok, data, f"{name}: {outcome['state']}")

    def _apply(self, service: ServiceView, change: ServiceChange) -> None:
        if change.kind == "restart":
            self.engine.force_update(service.id)
        elif change.kind == "rollback":
            self.cli.rollback(service.id)
        else:
            self.engine.update_service(service.id, **change.spec)

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

    # -- nodes (!drain, !pause, !activate) ------------------------------------------------

    def change_node(
        self, run: JobRun, name: str, availability: str, force: bool = False
    ) -> Answer:
        """Set a node's availability (once); a drain is checked first (services that would
        lose placement stop it, unless forced) and watched until the node's tasks have
        moved, or shown stuck with swarm's reason."""
        job = run.job
        every = self.engine.nodes()
        node = self._find_node(every, name)
        host, node_id = hostname(node), node["ID"]
        current = (node.get("Spec") or {}).get("Availability", "active")
        data: dict[str, Any] = {"node": host, "availability": availability, "was": current}
        if current == availability:
            return Answer(True, {**data, "unchanged": True}, f"{host} was already {current}")
        impact: list[nodes.Impact] = []
        if availability == "drain":
            running = self.engine.tasks(**{"desired-state": "running"})
            services = self.engine.services()
            data_here = self._data_on(host)
            impact = nodes.drain_impact(node, every, services, running, data_here)
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
            data["away"] = sorted(
                f"{i.service} (volume {', '.join(data_here[i.service])})"
                for i in shown
                if i.service in data_here
            )
        # The job tells the change, not the watcher: expected before it is made.
        self.state.wait_for_redis(lambda: self.state.notices.expect(node_id, availability))
        self.turns.apply_once(
            run, f"{job.op}:{node_id}", lambda: self.engine.set_availability(node_id, availability)
        )
        if availability == "drain":
            data.update(self._watch_drain(node_id, host, impact, run))
        ok = not data.get("stuck") and not data.get("left") and not data.get("moving")
        return Answer(ok, data, f"{host} {availability}" + ("" if ok else ": tasks not placed"))

    def volumes(self) -> list[dict[str, Any]]:
        every = self.engine.nodes()
        services = self.engine.services()
        live = volumes.uses(services, self.engine.tasks(**{"desired-state": "running"}), every)
        rows: dict[str, dict[str, Any]] = {
            name: {
                "volume": name,
                "stack": record.get("stack", ""),
                "services": set(record["services"]),
                "nodes": set(record["nodes"]),
                "driver": record.get("driver", "local"),
                "portable": bool(record.get("portable")),
            }
            for name, record in self.state.queue.volume_store().all().items()
        }
        for use in live:
            row = rows.setdefault(
                use.volume,
                {"volume": use.volume, "stack": use.stack, "services": set(), "nodes": set()},
            )
            row["services"].add(use.service)
            row["nodes"].add(use.node)
            row.update(driver=use.driver, portable=use.portable)
        by_name = {s["Spec"]["Name"]: s for s in services}
        out = []
        for row in sorted(rows.values(), key=lambda r: str(r["volume"])):
            pins = {volumes.pinned_to(by_name[s], every) for s in row["services"] if s in by_name}
            row["pinned"] = pins.pop() if len(pins) == 1 else ""
            row["services"], row["nodes"] = sorted(row["services"]), sorted(row["nodes"])
            out.append(row)
        return out

    def doctor(self) -> list[Finding]:
        return worker_findings(self.state, self.identity)

    def _data_on(self, host: str) -> dict[str, list[str]]:
        """Per service, the local volumes whose data is on node ``host`` (the record)."""
        out: dict[str, list[str]] = {}
        for volume, record in self.state.queue.volume_store().all().items():
            if record.get("portable") or host not in record["nodes"]:
                continue
            for service in record["services"]:
                out.setdefault(str(service), []).append(volume)
        return out

    def find_node(self, name: str) -> dict[str, Any]:
        return self._find_node(self.engine.nodes(), name)

    def _find_node(self, every: list[dict[str, Any]], name: str) -> dict[str, Any]:
        node = nodes.find(every, name)
        if node is None:
            known = ", ".join(sorted(hostname(n) for n in every))
            raise JobFailed(f"no node `{name}` (nodes: {known})")
        return node

    def _watch_drain(
        self, node_id: str, host: str, impact: list[nodes.Impact], run: JobRun
    ) -> dict[str, Any]:
        """Until the node runs nothing of the services it ran and each of them runs whole
        elsewhere or is stuck (pending with swarm's reason, failing), or the deadline: where
        their tasks run now. "Moved" only for tasks seen running on another node."""
        deadline = time.monotonic() + self.config.deploy_deadline_seconds
        names = {i.service for i in impact if not i.message.startswith("global")}
        hosts = {n["ID"]: hostname(n) for n in self.engine.nodes()}
        while True:
            tasks = self.engine.tasks(**{"desired-state": "running"})
            left = [t for t in nodes.running_here(tasks, node_id) if t.get("ServiceID")]
            placed = self._placed_again(names, tasks, hosts, node_id)
            moved, stuck, moving = placed["moved"], placed["stuck"], placed["moving"]
            run.progress({"node": host, "left": len(left), "moved": len(moved), "of": len(names)})
            if (not left and not moving) or time.monotonic() > deadline:
                return {"moved": moved, "stuck": stuck, "moving": moving, "left": len(left)}
            self.state.stop.wait(DRAIN_POLL_SECONDS)

    def _placed_again(
        self, names: set[str], tasks: list[dict[str, Any]], hosts: dict[str, str], node_id: str
    ) -> dict[str, list[dict[str, Any]]]:
        """Of the services named: those whole again on other nodes (with the nodes), those
        swarm cannot place or that fail (with its reason, and where what runs runs), and
        those still on their way (with the state of a task not running yet)."""
        out: dict[str, list[dict[str, Any]]] = {"moved": [], "stuck": [], "moving": []}
        for service in self.engine.services(status=True):
            view = ServiceView.of(service)
            if view.name not in names:
                continue
            mine = [t for t in tasks if t.get("ServiceID") == view.id]
            elsewhere = [
                t
                for t in mine
                if (t.get("Status") or {}).get("State") == "running" and t.get("NodeID") != node_id
            ]
            where = sorted({hosts.get(t.get("NodeID", ""), "?") for t in elsewhere})
            want = view.replicas or int(
                (service.get("ServiceStatus") or {}).get("DesiredTasks", 0)
            )
            failing = failing_task(mine, time.time())
            if want and len(elsewhere) >= want:
                out["moved"].append({"service": view.name, "to": where})
            elif failing is not None:
                reason = describe_task(failing)
                out["stuck"].append({"service": view.name, "reason": reason, "to": where})
            else:
                waiting = [t for t in mine if t not in elsewhere]
                state = describe_task(waiting[-1]) if waiting else "not started yet"
                out["moving"].append({"service": view.name, "reason": state, "to": where})
        return out

    # -- stacks ------------------------------------------------------------------------

    def deploy_stack(
        self,
        stack: str,
        run: JobRun,
        force: bool = False,
        prune: bool = False,
        source: StackSource | None = None,
    ) -> DeployReport:
        source = source or self.files.source()
        file = self.files.stack_file(stack, source, run.job.requester)
        base = DeployReport(stack=stack, ok=False, error="", outcomes=[], problems=[], note="")
        if source.commit:
            base["commit"] = dict(source.commit)
        step = f"deploy:{stack}"
        with self.turns.stack_turn(stack, run), self.turns.claim([stack], run):
            started = time.monotonic()
            rendered, problems, note = self.files.check_file(stack, file)
            base["problems"] = [as_problem_data(p) for p in problems]
            stale = f"deployed as last fetched ({source.stale})" if source.stale else ""
            base["note"] = "; ".join(n for n in (note, stale) if n)
            base["cli"] = self.cli.version
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
            gone: list[ServiceView] = []
            if rendered is not None:
                leaving = self.files.leaving_data(stack, rendered)
                if leaving and not force:
                    said = "; ".join(f"{s} {why}" for s, why in sorted(leaving.items()))
                    code = self._confirm_anyway(run, stack)
                    error = (
                        f"not deployed: {said}; !confirm {code} deploys it anyway (the "
                        "service starts with an empty volume; or pin it to its data)"
                    )
                    return {**base, "error": error}
                if leaving:
                    base["note"] = "; ".join(
                        n
                        for n in (
                            base["note"],
                            f"moved away from their data: {', '.join(sorted(leaving))}",
                        )
                        if n
                    )
                changes = preflight.diff(stack, rendered, current)
                lost = {c["service"] for c in changes if c["change"] == preflight.REMOVED}
                gone = [ServiceView.of(s) for s in current if s["Spec"]["Name"] in lost]
                if not prune:  # named, left running
                    changes = [c for c in changes if c["service"] not in lost]
                    if lost:
                        base["orphans"] = sorted(lost)
                base["changes"] = changes
                if current and not changes and not force and self.turns.first_try(run, step):
                    return {**base, "ok": True, "unchanged": True}
            try:
                since = self.turns.apply_once(
                    run,
                    step,
                    lambda: dockercli.deploy(
                        self.cli.docker,
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
                base["removed"] = sorted(s.name for s in gone)
                base["volumes_kept"] = sorted({v for s in gone for v in s.volumes})
            ids = [s["ID"] for s in self.engine.services(stack)]
            outcomes = self.engine.watch(
                ids,
                since,
                started + self.config.deploy_deadline_seconds,
                on_progress=lambda a: run.progress(
                    {"stack": stack, "services": _progress_rows(a), "total": len(ids)}
                ),
            )
        ok = all(o["state"] == "converged" for o in outcomes)
        if ok and rendered is not None:
            made = set(preflight.object_names(stack, rendered).values())
            base["objects_removed"] = self._remove_old_versions(stack, made)
        return {
            **base,
            "ok": ok,
            "outcomes": self._explain(outcomes, ids),
            # Since the change was applied, even if an earlier worker applied it (a job
            # taken over after `!deploy swarmbot` replaced its worker).
            "seconds": round(max(time.monotonic() - started, time.time() - since), 1),
        }

    def _confirm_anyway(self, run: JobRun, stack: str) -> str:
        """A confirmation code for the same deploy, forced: the requester confirms it as any
        other (``!confirm CODE``), within ``safety.confirm_seconds``; audited there."""
        job = run.job
        args = {"stack": stack, "option": "--force"}
        if job.args.get("ref"):
            args["ref"] = job.args["ref"]
        at = f"@{args['ref']}" if "ref" in args else ""
        pending = {
            "user": job.requester,
            "command": "deploy",
            "args": args,
            "text": f"{self.config.prefix}deploy {stack}{at} --force",
            "ref": {k: v for k, v in job.reply_to.items() if k != "inbox"},
            "stack": stack,
            "confirmed": False,
            "approver": "",
            "second": matches_any(stack, self.config.second_approver_stacks),
        }
        with self.queue.batch() as pipe:
            return self.queue.ask_approval(pending, self.config.confirm_seconds, pipe)

    def _remove_old_versions(self, stack: str, made: set[str]) -> list[str]:
        """Once a deploy converged: the earlier versions of the stack's file-based configs
        and secrets that no service uses any more (``docker stack deploy`` leaves them, so
        they piled up with every edit). One still in use, or that fails, is left."""
        removed = []
        try:
            for kind, object_id, name in self.engine.unused_versions(stack, made):
                try:
                    self.engine.remove_object(kind, object_id)
                    removed.append(name)
                except docker.errors.APIError as exc:
                    log.info("left %s %s: %s", kind, name, short(exc))
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            log.warning("old config versions of %s not removed: %s", stack, short(exc))
        return removed

    # -- images (!updates; the source watcher reads the registry the same way) ------------

    def image_updates(self, services: list[dict[str, Any]]) -> dict[str, Any]:
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


def _progress_rows(assessments: list[Assessment]) -> list[dict[str, Any]]:
    return [
        {"name": a.name, "running": a.running, "desired": a.desired, "state": a.state}
        for a in assessments
    ]
