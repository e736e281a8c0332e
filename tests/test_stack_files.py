"""The infrastructure stacks in stacks/: valid for `docker stack config`, and laid out as
the design says (networks per stack through ingress, named volumes, pinned images)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.harness import ROOT, BotEnv

pytestmark = pytest.mark.unit

STACKS = ROOT / "stacks"
NAMES = ["ingress", "support", "sysadmin", "cdn", "ci", "dev", "community", "swarmbot"]
VARIABLES = {
    "DOMAIN": "example.org",
    "REGISTRY": "registry.example.org",
    "ACME_EMAIL": "ops@example.org",
}


def cli_with_stack_config() -> str:
    """A docker CLI that has `stack config` (23+); the machine may have several."""
    for candidate in (shutil.which("docker"), "/usr/local/bin/docker", "/usr/bin/docker"):
        if candidate and Path(candidate).exists():
            probe = subprocess.run(
                [candidate, "stack", "config", "--help"], capture_output=True, check=False
            )
            if probe.returncode == 0:
                return candidate
    pytest.fail("no docker CLI with `docker stack config` (needs 23 or newer) on this machine")


@pytest.mark.parametrize("name", NAMES)
def test_stack_renders_with_docker_stack_config(name: str) -> None:
    env = {"PATH": os.environ["PATH"], **VARIABLES}
    proc = subprocess.run(
        [cli_with_stack_config(), "stack", "config", "-c", str(STACKS / f"{name}.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=STACKS,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rendered = yaml.safe_load(proc.stdout)
    assert rendered["services"]


def test_domain_is_required_not_silently_empty() -> None:
    env = {"PATH": os.environ["PATH"], "REGISTRY": "r", "ACME_EMAIL": "e"}
    proc = subprocess.run(
        [cli_with_stack_config(), "stack", "config", "-c", str(STACKS / "dev.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=STACKS,
        check=False,
    )
    assert proc.returncode != 0 and "DOMAIN" in proc.stderr


@pytest.mark.parametrize("name", NAMES)
def test_stack_layout(name: str) -> None:
    doc = yaml.safe_load((STACKS / f"{name}.yaml").read_text())
    for svc_name, svc in doc["services"].items():
        image = svc["image"]
        assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), (
            f"{svc_name}: pin {image}"
        )
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source.startswith("/") or source in doc.get("volumes", {}), (
                f"{svc_name}: {volume}"
            )
    for net_name, net in (doc.get("networks") or {}).items():
        if net.get("external"):
            assert re.match(r"^(ingress_[a-z]+|support_backend)$", net_name), net_name
    if name == "ingress":
        assert set(doc["networks"]) == set(NAMES) - {"ingress", "swarmbot"}
    elif name not in ("support", "swarmbot"):  # neither serves the web
        assert f"ingress_{name}" in doc["networks"], "web services attach to their ingress network"


def test_demo_stack_deploys_on_the_local_swarm(
    workdir: Path, redis_url: str, swarm, run_id: str
) -> None:
    """The stack `make run` offers, deployed by the bot on the real swarm."""
    env = BotEnv(workdir, redis_url, "demo", deadline=40)
    text = (ROOT / "demo/stacks/demo.yaml").read_text()
    (env.stacks_dir / f"{run_id}-demo.yaml").write_text(
        text.replace("swarmbot-demo/busybox", "swarmbot-test/busybox")
    )
    env.start_in_process()
    try:
        out = env.chat(f"!deploy {run_id}-demo", "!services")
    finally:
        env.stop_worker()
    assert f"deployed {run_id}-demo: 2 services converged" in out, out
    assert re.search(rf"{run_id}-demo_web\s+replicated\s+2/2", out), out


def test_deploy_all_order_follows_what_stacks_need() -> None:
    """The real stacks: ingress and support first (everything attaches to their networks)."""
    from bot.swarm.dockercli import stack_files
    from bot.swarm.preflight import deploy_order

    order = deploy_order(stack_files(STACKS), ("ingress", "support"))
    assert order[:2] == ["ingress", "support"]
    assert set(order) == set(NAMES)


def test_dependencies_beat_the_configured_order(tmp_path: Path) -> None:
    from bot.swarm.preflight import OrderError, deploy_order

    (tmp_path / "aaa.yaml").write_text(
        "networks:\n  shared:\n    external: true\n    name: zzz_shared\n"
    )
    (tmp_path / "mmm.yaml").write_text(
        "volumes:\n  data:\n    external: true\n    name: aaa_data\n"
    )
    (tmp_path / "zzz.yaml").write_text("networks:\n  shared:\n    attachable: true\n")
    files = {p.stem: p for p in sorted(tmp_path.glob("*.yaml"))}
    assert deploy_order(files, ("mmm",)) == ["zzz", "aaa", "mmm"]
    (tmp_path / "zzz.yaml").write_text("networks:\n  x:\n    external: true\n    name: mmm_x\n")
    with pytest.raises(OrderError, match="need each other: aaa, mmm, zzz"):
        deploy_order({p.stem: p for p in sorted(tmp_path.glob("*.yaml"))}, ())
