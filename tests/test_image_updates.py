"""Images against a real registry (Debian's docker-registry): !updates, the tag-moved notice
told once, semver's newer tags, and the request budget (one request per image, none
while cached, 304s after)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import docker
import pytest

from bot.chat.adapters.slack_render import unescape
from bot.core.config.defaults import registry_defaults
from bot.swarm import updates
from bot.swarm.registry import ImageRef, Registry, RegistryError
from tests.gitserver import Registry as RegistryServer
from tests.harness import TEST_IMAGE, BotEnv, remove_stacks, wait_until
from tests.slack_fake import FakeSlack, bot_config, running_fake, wait_for_reply

OPS, NOTICES, ALICE = "C0OPS0001", "C0NOTICE1", "UALICE001"


@pytest.fixture(scope="module")
def registry(workdir: Path, swarm: docker.DockerClient) -> Iterator[RegistryServer]:
    with RegistryServer(workdir / "registry") as server:
        yield server
    for image in swarm.images.list():
        if any(r.startswith(server.addr) for r in image.tags + image.attrs.get("RepoDigests", [])):
            with contextlib.suppress(docker.errors.APIError):  # one a task still uses
                swarm.images.remove(image.id, force=True)


def push(client: docker.DockerClient, registry: RegistryServer, tag: str, label: str) -> str:
    """Build an image that differs by ``label`` from the test image, push it as
    ``<registry>/swarmbot-test/app:<tag>``; its digest in the registry."""
    dockerfile = f"FROM {TEST_IMAGE}\nLABEL build={label}\n".encode()
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile), rm=True, pull=False)
    repo = f"{registry.addr}/swarmbot-test/app"
    image.tag(repo, tag)
    client.images.push(repo, tag)
    return registry.digest("swarmbot-test/app", tag)


def fake_services(count: int, images: list[str]) -> list[dict]:
    return [
        {
            "Spec": {
                "Name": f"s{i}_svc",
                "Labels": {"com.docker.stack.namespace": f"s{i}"},
                "TaskTemplate": {"ContainerSpec": {"Image": images[i % len(images)]}},
            }
        }
        for i in range(count)
    ]


@pytest.mark.swarm
def test_one_request_per_image_none_while_cached(
    registry: RegistryServer, swarm: docker.DockerClient
) -> None:
    """The budget: 100 services on 5 images cost 5 requests; within the cache, none; after
    it, 5 conditional ones (answered 304, no body)."""
    images = []
    for n in range(5):
        digest = push(swarm, registry, f"b{n}", f"budget{n}")
        images.append(f"{registry.addr}/swarmbot-test/app:b{n}@{digest}")
    client = Registry(registry_defaults())
    for count in (10, 100):
        services = fake_services(count, images)
        before = client.requests
        found = updates.check(client, services, lambda stack: "")
        assert not any(n.moved or n.error for n in found), found
        assert client.requests - before == (5 if count == 10 else 0)  # 100: all cached
    expired = Registry(replace(registry_defaults(), cache_seconds=0))
    updates.check(expired, fake_services(100, images), lambda stack: "")
    updates.check(expired, fake_services(100, images), lambda stack: "")
    assert expired.requests == 10  # 5 + 5 conditional (304): never one per service


@pytest.mark.swarm
def test_updates_and_a_moved_tag_told_once(
    workdir: Path,
    redis_url: str,
    swarm: docker.DockerClient,
    run_id: str,
    registry: RegistryServer,
) -> None:
    first = push(swarm, registry, "1.0.0", "one")
    image = f"{registry.addr}/swarmbot-test/app:1.0.0"
    stack = f"{run_id}-upd"
    with running_fake() as fake:
        env = BotEnv(
            workdir,
            redis_url,
            "updates",
            deadline=30,
            resolve_image="always",  # swarm pins the digest: what "running" is read from
            adapters=("slack",),
            extra_roles=bot_config(fake, (ALICE,), OPS, notices=NOTICES)
            + f"""

            [registry]
            poll_seconds = 1
            cache_seconds = 0
            semver = {{ "{run_id}-up*" = "minor" }}

            [changes]
            default = "confirm"

            [notices]
            quiet_seconds = 1
            poll_seconds = 2

            [[notices.route]]
            stacks = ["{run_id}-up*"]
            slack = ["{NOTICES}"]
            """,
        )
        env.add_stack(stack, {"web": {"image": image}})
        env.start_worker("updates-worker")
        env.start_bot()
        try:
            run(env, fake, stack, first, image, swarm, registry)
        finally:
            env.stop_bot()
            env.stop_worker()
            remove_stacks(swarm, stack)


def run(
    env: BotEnv,
    fake: FakeSlack,
    stack: str,
    first: str,
    image: str,
    swarm: docker.DockerClient,
    registry: RegistryServer,
) -> None:
    def ask(text: str, answer: str) -> str:
        ts = fake.say(OPS, ALICE, text)
        return unescape(wait_for_reply(fake, OPS, ts, answer, timeout=90)["text"])

    def notices(about: str) -> list[str]:
        texts = [unescape(m["text"]) for m in fake.messages if m["channel"] == NOTICES]
        return [t for t in texts if about in t]

    def looks() -> int:
        return int(env.redis().get(f"{env.prefix}:watch:looks") or 0)

    def settle() -> None:
        start = looks()
        wait_until(lambda: looks() >= start + 2, 60, "the source watcher to look twice")

    ask(f"!deploy {stack}", f"deployed {stack}")
    spec_image = swarm.services.get(f"{stack}_web").attrs["Spec"]["TaskTemplate"]
    assert spec_image["ContainerSpec"]["Image"] == f"{image}@{first}"
    answer = ask(f"!updates {stack}", "registry request")
    assert f"no updates in {stack}: 1 image of 1 service match their registry" in answer, answer

    # A newer tag the stack's semver policy allows: listed, not told (nothing moved).
    push(swarm, registry, "1.1.0", "minor")
    push(swarm, registry, "2.0.0", "major")  # a major bump: beyond "minor"
    answer = ask(f"!updates {stack}", "newer tag")
    assert "1.1.0" in answer and "2.0.0" not in answer, answer

    # The tag moves: one notice, with the digests and how to apply it; !updates shows it.
    second = push(swarm, registry, "1.0.0", "moved")
    told = wait_until(lambda: notices("moved in its registry"), 30, "the tag-moved notice")
    short = lambda d: d.removeprefix("sha256:")[:12]  # noqa: E731
    assert f"{image} moved in its registry ({short(first)} -> {short(second)})" in told[0]
    assert f"run by {stack}_web: !confirm " in told[0], told  # [changes] policy: confirm
    code = re.search(r"!confirm ([A-Z0-9]{4}) deploys it .*!deploy " + stack + " --force", told[0])
    assert code, told
    settle()
    settle()
    assert len(notices("moved in its registry")) == 1, notices("moved in its registry")
    answer = ask(f"!updates {stack}", "tag moved")
    assert short(second) in answer and short(first) in answer, answer

    # Confirmed, so applied: the service runs the new digest; only the newer tag is left.
    ask(f"!confirm {code.group(1)}", f"deployed {stack}")
    spec = swarm.services.get(f"{stack}_web").attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert spec["Image"] == f"{image}@{second}"
    answer = ask(f"!updates {stack}", "registry request")
    assert "tag moved" not in answer and "1.1.0" in answer, answer


@pytest.mark.swarm
def test_registry_credentials_come_from_a_docker_config_file(
    workdir: Path, swarm: docker.DockerClient
) -> None:
    """A private registry (HTTP Basic auth): anonymous is told it needs credentials; with a
    Docker config.json (as a Docker secret holds it) the digest is read."""
    import crypt  # bcrypt for the registry's htpasswd (deprecated in 3.11, still here)

    root = workdir / "private-registry"
    root.mkdir(parents=True, exist_ok=True)
    password = "s3cret-registry-password"
    htpasswd = root / "htpasswd"
    htpasswd.write_text(f"ci:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
    with RegistryServer(root, htpasswd) as server:
        repo = f"{server.addr}/swarmbot-test/private"
        try:
            check_credentials(swarm, server, repo, password, root)
        finally:
            with contextlib.suppress(docker.errors.APIError):
                swarm.images.remove(f"{repo}:1")


def check_credentials(
    swarm: docker.DockerClient, server: RegistryServer, repo: str, password: str, root: Path
) -> None:
    swarm.images.get(TEST_IMAGE).tag(repo, "1")
    swarm.images.push(repo, "1", auth_config={"username": "ci", "password": password})
    ref = ImageRef.parse(f"{repo}:1")
    with pytest.raises(RegistryError, match="wants credentials"):
        Registry(registry_defaults()).digest(ref)
    auth = base64.b64encode(f"ci:{password}".encode()).decode()
    file = root / "config.json"
    file.write_text(json.dumps({"auths": {server.addr: {"auth": auth}}}))
    client = Registry(replace(registry_defaults(), credentials_file=file))
    digest = client.digest(ref)
    assert digest.startswith("sha256:") and client.requests == 2  # 401, then with auth
    file.write_text(
        json.dumps({"auths": {server.addr: {"auth": base64.b64encode(b"ci:no").decode()}}})
    )
    with pytest.raises(RegistryError, match="refused the credentials") as refused:
        Registry(replace(registry_defaults(), credentials_file=file)).digest(ref)
    assert password not in str(refused.value)
