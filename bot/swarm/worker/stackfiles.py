"""The stack files a job reads (``bot.core.operations.StackFiles``): where they come from
(the stacks directory, or a commit of the [git] repository), each one checked before it is
read, rendered and pre-flight checked, compared with the swarm, and put in deploy order.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bot.core.config import Config
from bot.core.ids import COMMIT_LABEL, PREVIOUS_COMMIT_LABEL, matches_any, stack_of
from bot.core.operations import JobFailed, StackSource
from bot.core.policy import Policy
from bot.core.wire import ChangeData, ProblemData
from bot.swarm import dockercli, hostaccess, preflight, volumes
from bot.swarm.engine import Swarm
from bot.swarm.gitsource import Commit, GitError
from bot.swarm.preflight import Problem, SwarmSnapshot
from bot.swarm.worker.lifecycle import WorkerState
from bot.swarm.worker.stackcli import StackCliOps

log = logging.getLogger("swarmbot.worker")


class SwarmStackFiles:
    def __init__(self, state: WorkerState, cli: StackCliOps) -> None:
        self.state = state
        self.config: Config = state.config
        self.policy: Policy = state.policy
        self.engine: Swarm = state.engine
        self._cli = cli

    @property
    def cli(self) -> dockercli.DockerCli:
        return self._cli.docker

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
        rendered, problems, note = self.check_file(stack, file)
        return rendered, [as_problem_data(p) for p in problems], note

    def render(
        self, stack: str, source: StackSource | None = None, requester: str = ""
    ) -> dict[str, Any]:
        """The stack's file as the CLI would deploy it, without the pre-flight check: what
        a diff and the drift check compare (the check's five list calls and its findings
        would be thrown away). Raises ``JobFailed`` when the file cannot be rendered."""
        file = self.stack_file(stack, source, requester)
        try:
            return dockercli.render(self.cli, file, self.config.variables)
        except (dockercli.NoRender, dockercli.DeployError) as exc:
            raise JobFailed(str(exc)) from None

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
        """``preflight.diff``, and for a service the deploy would move away from its
        local volume's data, that too."""
        changes = preflight.diff(stack, rendered, self.engine.services(stack))
        leaving = self.leaving_data(stack, rendered)
        for change in changes:
            if change["service"] in leaving:
                change["details"] = [*change["details"], leaving[change["service"]]]
                change["restarts"] = True
        return changes

    def leaving_data(self, stack: str, rendered: dict[str, Any]) -> dict[str, str]:
        """Services of the file whose deploy moves them away from their data (the record
        of where each volume's data is, ``bot.queue.volumestore``)."""
        records = self.state.queue.volume_store().all()
        where = {v: sorted(r["nodes"]) for v, r in records.items() if not r.get("portable")}
        if not where:
            return {}
        return volumes.leaving_data(stack, rendered, self.engine.nodes(), where)

    def deploy_plan(self, source: StackSource) -> tuple[list[str], dict[str, set[str]]]:
        needs = preflight.deploy_needs(self.stack_files(source), self.config.deploy_first)
        try:
            return preflight.order_of(needs, self.config.deploy_first), needs
        except preflight.OrderError as exc:
            raise JobFailed(str(exc)) from None

    def _snapshot(self) -> SwarmSnapshot:
        """The swarm as a check sees it, with where each volume's data is (the record)."""
        snapshot = self.engine.snapshot()
        records = self.state.queue.volume_store().all()
        snapshot.volume_nodes = {v: sorted(r["nodes"]) for v, r in records.items()}
        return snapshot

    def check_file(
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
            self._snapshot(),
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


def as_problem_data(problem: Problem) -> ProblemData:
    return ProblemData(
        service=problem.service, key=problem.key, message=problem.message, error=problem.error
    )
