"""Every queued command's handler against a small fake of the tools it uses: what the
handler asks the shared blocks for, what it refuses, and the answer it gives. No Docker, no
Redis: the blocks themselves are tested against the real swarm elsewhere (the chat tests
run the worker in-process, tests/testbot.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.core.ids import COMMIT_LABEL, PREVIOUS_COMMIT_LABEL
from bot.core.operations import JobFailed, ServiceChange
from commands import REGISTRY
from tests.fakes import DEV_ONLY, FakeEngine, FakeFiles, FakeTools, run_job, service

pytestmark = pytest.mark.unit


def test_ping_names_the_worker() -> None:
    answer, _ = run_job(FakeTools(), "ping")
    assert answer.data["worker"] == "worker-1"


def test_ping_says_which_daemon_node_and_swarm() -> None:
    from bot.core.wire import Result
    from commands.ping import render

    answer, _ = run_job(FakeTools(), "ping")
    reply = render(Result("result", "7", "ping", True, dict(answer.data), {"inbox": "t"}))
    assert reply.text == (
        "pong from worker worker-1: swarm ssssssssssss, node manager1 (manager), "
        "daemon unix:///var/run/docker.sock"
    )


def test_services_lists_only_what_the_requester_may_see() -> None:
    tools = FakeTools(FakeEngine([service("dev_web"), service("ops_db")]))
    answer, _ = run_job(tools, "services", DEV_ONLY)
    assert answer.data["hidden"] == 1


def test_services_of_a_stack_outside_the_requesters_roles_is_refused() -> None:
    with pytest.raises(JobFailed):
        run_job(FakeTools(), "services", DEV_ONLY, stack="ops")


def test_ps_reads_the_resolved_services_tasks() -> None:
    answer, _ = run_job(FakeTools(FakeEngine([service("dev_web")])), "ps", service="web")
    assert answer.data["rows"] == [{"id": "t1", "service": "id-dev_web"}]


def test_logs_asks_for_the_lines_given() -> None:
    tools = FakeTools(FakeEngine([service("dev_web")]))
    answer, _ = run_job(tools, "logs", service="web", lines="2")
    assert answer.data["lines"] == ["line 0", "line 1"]


def test_nodes_answers_the_engines_rows() -> None:
    answer, _ = run_job(FakeTools(), "nodes")
    assert answer.data["rows"] == [{"name": "n1"}]


def test_stacks_lists_files_and_deployed_stacks_the_requester_may_see() -> None:
    tools = FakeTools(FakeEngine([service("ops_db")]))
    answer, _ = run_job(tools, "stacks", DEV_ONLY)
    assert [r["name"] for r in answer.data["rows"]] == ["dev"]


def test_check_reads_the_file_at_the_ref_given() -> None:
    tools = FakeTools()
    answer, _ = run_job(tools, "check", stack="dev", ref="abc1234")
    assert tools.files.sources == ["abc1234"]
    assert answer.ok  # a warning is not an error


def test_diff_without_a_rendered_file_fails_with_why() -> None:
    tools = FakeTools(files=FakeFiles(rendered=None))
    with pytest.raises(JobFailed, match="no docker CLI"):
        run_job(tools, "diff", stack="dev")


def test_diff_names_the_services_that_would_change() -> None:
    answer, _ = run_job(FakeTools(), "diff", stack="dev")
    assert [c["service"] for c in answer.data["changes"]] == ["dev_web"]


def test_updates_look_only_at_services_the_requester_may_see() -> None:
    tools = FakeTools(FakeEngine([service("dev_web"), service("ops_db")]))
    run_job(tools, "updates", DEV_ONLY)
    assert tools.calls == [("image_updates", ["dev_web"])]


def test_restart_asks_for_a_restart_of_the_resolved_service() -> None:
    tools = FakeTools(FakeEngine([service("dev_web")]))
    run_job(tools, "restart", service="web")
    assert tools.calls == [("change_service", "dev_web", ServiceChange.restart())]


def test_scale_asks_for_the_replicas_given() -> None:
    tools = FakeTools(FakeEngine([service("dev_web")]))
    run_job(tools, "scale", service="web", replicas="3")
    [(_, _, change)] = tools.calls
    assert change == ServiceChange.update(mode={"Replicated": {"Replicas": 3}})


def test_scale_of_a_global_service_is_refused() -> None:
    tools = FakeTools(FakeEngine([service("dev_agent", replicas=None)]))
    with pytest.raises(JobFailed, match="global service"):
        run_job(tools, "scale", service="agent", replicas="3")
    assert tools.calls == []


def test_rollback_of_a_service_without_a_previous_spec_is_refused() -> None:
    tools = FakeTools(FakeEngine([service("dev_web")]))
    with pytest.raises(JobFailed, match="no previous spec"):
        run_job(tools, "rollback", service="dev_web")


def test_rollback_of_a_service_asks_for_swarms_rollback() -> None:
    tools = FakeTools(FakeEngine([service("dev_web", previous=True)]))
    run_job(tools, "rollback", service="dev_web")
    assert tools.calls == [("change_service", "dev_web", ServiceChange.rollback())]


def test_rollback_of_a_stack_deploys_its_previous_commit() -> None:
    labels = {COMMIT_LABEL: "b" * 40, PREVIOUS_COMMIT_LABEL: "a" * 40}
    tools = FakeTools(FakeEngine([service("dev_web", labels=labels)]))
    answer, _ = run_job(tools, "rollback", service="dev")
    assert tools.files.sources == ["a" * 40]
    assert answer.data["rollback"] is True


def test_rm_removes_under_the_stacks_turn_once_and_names_the_volumes_kept() -> None:
    mounts = ({"Type": "volume", "Source": "dev_data", "Target": "/data"},)
    engine = FakeEngine([service("dev_web", mounts=mounts)])
    tools = FakeTools(engine)
    tools.cli.on_remove = lambda: engine.every.clear()
    answer, _ = run_job(tools, "rm", service="web")
    assert tools.cli.removed == ["service id-dev_web"]
    assert tools.turns.log == [
        "turn dev",
        "claim dev_web",
        "applied rm:dev_web",
        "waited",
        "end turn dev",
    ]
    assert answer.data["volumes"] == ["dev_data"]


def test_rm_that_swarm_does_not_finish_fails_at_the_deadline() -> None:
    tools = FakeTools(FakeEngine([service("dev_web")]))
    with pytest.raises(JobFailed, match="still there"):
        run_job(tools, "rm", service="web")


def test_undeploy_of_a_stack_that_is_not_deployed_is_refused() -> None:
    tools = FakeTools()
    with pytest.raises(JobFailed, match="not deployed"):
        run_job(tools, "undeploy", stack="dev")
    assert tools.cli.removed == []


def test_undeploy_removes_the_stack_and_keeps_its_volumes() -> None:
    engine = FakeEngine([service("dev_web"), service("dev_db")], volumes=["dev_data"])
    tools = FakeTools(engine)
    tools.cli.on_remove = lambda: engine.every.clear()
    answer, _ = run_job(tools, "undeploy", stack="dev")
    assert tools.cli.removed == ["stack dev"]
    assert answer.data == {
        "stack": "dev",
        "services": ["dev_db", "dev_web"],
        "volumes": ["dev_data"],
    }


def test_undeploy_taken_over_after_it_was_applied_finishes_the_job() -> None:
    tools = FakeTools()
    tools.turns.applied.add("undeploy:dev")  # a worker that died after `docker stack rm`
    answer, _ = run_job(tools, "undeploy", stack="dev")
    assert answer.ok


def test_undeploy_refused_outside_the_requesters_stacks() -> None:
    tools = FakeTools(FakeEngine([service("ops_db")]))
    with pytest.raises(JobFailed):
        run_job(tools, "undeploy", DEV_ONLY, stack="ops")
    assert tools.cli.removed == []


@pytest.mark.parametrize(
    ("option", "force", "prune"),
    [(None, False, False), ("--force", True, False), ("--prune", False, True)],
)
def test_deploy_passes_its_option(option: str | None, force: bool, prune: bool) -> None:
    tools = FakeTools()
    args = {"stack": "dev", **({"option": option} if option else {})}
    run_job(tools, "deploy", **args)
    assert tools.calls == [("deploy_stack", "dev", force, prune, None)]


def test_deploy_all_goes_in_waves_and_a_failure_stops_only_what_needs_it() -> None:
    needs = {"ingress": set(), "support": {"ingress"}, "ci": {"support"}, "dev": {"ingress"}}
    tools = FakeTools(
        files=FakeFiles(plan=(["ingress", "support", "ci", "dev"], needs)),
        failing_stacks={"support"},
    )
    answer, progress = run_job(tools, "deploy", stack="all")
    deployed = [c[1] for c in tools.calls]
    assert deployed[0] == "ingress"
    assert sorted(deployed[1:]) == ["dev", "support"]
    assert answer.data["skipped"] == [{"stack": "ci", "why": "needs support, which failed"}]
    assert "deploying" in progress[0]


def test_deploy_all_is_refused_whole_when_one_stack_is_not_the_requesters() -> None:
    tools = FakeTools(files=FakeFiles(plan=(["dev", "ops"], {"dev": set(), "ops": set()})))
    with pytest.raises(JobFailed):
        run_job(tools, "deploy", DEV_ONLY, stack="all")
    assert tools.calls == []


@pytest.mark.parametrize(
    ("command", "availability"), [("drain", "drain"), ("pause", "pause"), ("activate", "active")]
)
def test_node_commands_ask_for_their_availability(command: str, availability: str) -> None:
    tools = FakeTools()
    run_job(tools, command, node="worker2")
    assert tools.calls == [("change_node", "worker2", availability, False)]


def test_drain_force_is_passed_on() -> None:
    tools = FakeTools()
    run_job(tools, "drain", node="worker2", force="--force")
    assert tools.calls == [("change_node", "worker2", "drain", True)]


def test_every_queued_command_has_a_handler_test() -> None:
    """A new queued command gets a handler test: a test module that runs it on the fakes
    (tests/fakes.py) names it."""
    here = Path(__file__).parent
    texts = [p.read_text() for p in here.glob("test_*.py")]
    with_fakes = " ".join(t for t in texts if "tests.fakes import" in t)
    untested = [n for n, c in REGISTRY.items() if c.queued and f'"{n}"' not in with_fakes]
    assert untested == []


def labelled_node(**labels: str) -> dict[str, Any]:
    return {"ID": "n1abc", "Description": {"Hostname": "worker1"}, "Spec": {"Labels": labels}}


def test_label_sets_a_node_label_once_and_keeps_the_others() -> None:
    node = labelled_node(tier="small")
    tools = FakeTools(FakeEngine(node_list=[node]))
    answer, _ = run_job(tools, "label", node="worker1", change="zone=a")
    assert node["Spec"]["Labels"] == {"tier": "small", "zone": "a"}
    assert answer.data["labels"] == ["tier=small", "zone=a"]
    assert tools.turns.log == ["applied label:n1abc:zone"]


def test_label_removes_a_label() -> None:
    node = labelled_node(tier="small", zone="a")
    run_job(FakeTools(FakeEngine(node_list=[node])), "label", node="worker1", change="-zone")
    assert node["Spec"]["Labels"] == {"tier": "small"}


def test_label_that_changes_nothing_says_so_and_applies_nothing() -> None:
    tools = FakeTools(FakeEngine(node_list=[labelled_node(zone="a")]))
    answer, _ = run_job(tools, "label", node="worker1", change="zone=a")
    assert answer.data["unchanged"] is True
    assert tools.turns.log == []


def test_doctor_answers_each_check_and_fails_when_one_does() -> None:
    from bot.core.wire import Result
    from commands.doctor import render

    answer, _ = run_job(FakeTools(), "doctor")
    assert not answer.ok
    reply = render(Result("result", "7", "doctor", False, dict(answer.data), {"inbox": "t"}))
    assert reply.text == "doctor: 1 of 2 checks on the worker fail"
    assert reply.detail == (
        "ok   docker: swarm s, node manager1 (manager)",
        "FAIL ipvs: no ip_vs module (fix: deploy with the host-network override)",
    )


def test_volumes_names_where_data_is_and_flags_what_may_move_away() -> None:
    from bot.core.wire import Result
    from commands.volumes import render

    answer, _ = run_job(FakeTools(), "volumes")
    reply = render(Result("result", "7", "volumes", True, dict(answer.data), {"inbox": "t"}))
    assert reply.text == "2 volumes, 1 whose services may move away from their data"
    assert reply.table is not None
    assert reply.table.rows[0] == ("dev_data", "dev", "dev_db", "worker1", "local", "no")
    assert reply.table.flagged == frozenset({0})
    assert reply.table.rows[1][-2:] == ("local (nfs) (shared)", "not needed")


def test_volumes_of_a_node_and_only_stacks_the_requester_may_see() -> None:
    answer, _ = run_job(FakeTools(), "volumes", DEV_ONLY, where="worker2")
    assert answer.data["rows"] == []
    assert answer.data["hidden"] == 1


def test_rollback_names_the_volumes_it_kept() -> None:
    from bot.core.wire import Result
    from commands.rollback import render

    mounts = ({"Type": "volume", "Source": "dev_data", "Target": "/data"},)
    tools = FakeTools(FakeEngine([service("dev_web", previous=True, mounts=mounts)]))
    answer, _ = run_job(tools, "rollback", service="dev_web")
    assert answer.data["volumes"] == ["dev_data"]
    data = {
        **answer.data,
        "outcome": {"state": "converged", "running": 1, "desired": 1, "seconds": 2.0},
    }
    reply = render(Result("result", "7", "rollback", True, data, {"inbox": "t"}))
    assert reply.detail[-1] == "volumes kept as they are (the bot never deletes data): dev_data"
