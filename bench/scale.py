"""`make bench` at scale: a swarm of many stacks and services, and of many nodes.

- Services: 50 stacks (``bsNN``) grown from 100 to 500 to 2,000 services, replicas 0 but
  for one running task per stack (what fits on two cores, and enough tasks for the
  watcher's work to be real). At each size, every read a user makes beside the SDK call it
  wraps, a `!diff` of every stack, and the notice watcher's two kinds of look (in process,
  through the counting Docker proxy: CPU time and Engine API calls). At the first size,
  `!deploy all` of the 50 small stacks beside the docker CLI deploying them one by one.
- Nodes: the tests' own multi-node swarm with 3, then 20 nodes: `!nodes` beside the SDK
  calls it wraps, and a node killed: the notice's delay after swarm marks it down.

Benchmarks, not tests: nothing here asserts a time.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from bot.core.config import load
from bot.queue.clients import sync_client
from bot.queue.consumer import WorkerQueue
from bot.swarm.notices.rooms import Notices
from bot.swarm.notices.watcher import Watcher
from commands import REGISTRY
from tests.harness import BotEnv, stack_yaml, wait_until

STACKS = 50
Row = list[str]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


def beside(
    what: str,
    bot: float,
    floor: tuple[str, float],
    last: bool,
    show: Callable[[float], str] = ms,
    against: str = "the SDK",
) -> Row:
    """A read by chat beside the calls it makes (``floor``: what they are, their time);
    its target (2x) is judged only where ``last`` (the largest size)."""
    return [
        what,
        show(bot),
        f"{floor[0]} {show(floor[1])}",
        f"{bot / floor[1]:.1f}x {against}" + ("; target 2x" if last else ""),
        ("met" if bot <= 2 * floor[1] else "missed") if last else "-",
    ]


def timed(call: Callable[[], object], runs: int) -> float:
    """The median wall time of ``call``, after one warm-up call."""
    call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def stack_count(smoke: bool) -> int:
    return 4 if smoke else STACKS


def stack_names(stacks: int) -> list[str]:
    return [f"bs{n:02d}" for n in range(stacks)]


def write_stacks(stacks_dir: Path, stacks: int, per_stack: int) -> list[str]:
    """``stacks`` compose files of ``per_stack`` services: s00 runs one task, the rest 0."""
    names = stack_names(stacks)
    for name in names:
        services = {f"s{i:02d}": {"replicas": 1 if i == 0 else 0} for i in range(per_stack)}
        (stacks_dir / f"{name}.yaml").write_text(stack_yaml(services))
    return names


def cli_deploy_all(cli: str, stacks_dir: Path, names: list[str], wait: bool) -> float:
    """The docker CLI deploying the stacks one after another; ``wait``: --detach=false."""
    start = time.perf_counter()
    for name in names:
        subprocess.run(
            [cli, "stack", "deploy", f"--detach={'false' if wait else 'true'}", "-c",
             str(stacks_dir / f"{name}.yaml"), name],
            capture_output=True, check=True, timeout=600,
        )  # fmt: skip
    return time.perf_counter() - start


def remove_stacks(cli: str, client: docker.DockerClient, names: list[str]) -> None:
    subprocess.run([cli, "stack", "rm", *names], capture_output=True, check=False, timeout=600)
    wanted = set(names)

    def gone() -> bool:
        labels = [(c.get("Labels") or {}) for c in client.api.containers(all=True)]
        return not any(lb.get("com.docker.stack.namespace") in wanted for lb in labels) and not [
            s for s in client.api.services() if s["Spec"]["Name"].partition("_")[0] in wanted
        ]

    wait_until(gone, 600, "the benchmark's stacks to be gone")


def deploy_all_row(env: BotEnv, cli: str, client: docker.DockerClient, names: list[str]) -> Row:
    plain = cli_deploy_all(cli, env.stacks_dir, names, wait=True)
    print(f"docker CLI, {len(names)} stacks one after another: {plain:.1f} s", file=sys.stderr)
    remove_stacks(cli, client, names)
    start = time.perf_counter()
    asked = env.chat("!deploy all")
    found = re.search(r"!confirm ([A-Z0-9]{4})", asked)
    assert found, asked
    out = env.chat(f"!confirm {found.group(1)}", timeout=900)
    bot = time.perf_counter() - start
    assert f"deployed all {len(names)} stacks" in out, out[-2000:]
    alone = [float(m[1]) for m in re.finditer(r"converged in ([0-9.]+)s", out)]
    return [
        f"`!deploy all`, {len(names)} small stacks (2 services each, one task each)",
        f"{bot:.1f} s",
        f"`docker stack deploy --detach=false`, one stack after another: {plain:.1f} s",
        f"{bot / plain:.2f}x the CLI's time; slowest stack {max(alone or [0]):.1f} s",
        "met" if bot <= 0.15 * plain else "missed",
    ]


async def read_rows(
    env: BotEnv,
    client: docker.DockerClient,
    cli: str,
    stacks: int,
    sizes: tuple[int, int, int],  # services, runs, and 1 at the largest size
) -> list[Row]:
    """Each read at this size beside the SDK call(s) it wraps (the chat side in process,
    the worker a process of its own); the target (2x) is at the largest size (``last``):
    at a few services a chat round trip's fixed cost (the queue, two processes) is larger
    than the SDK call itself."""
    from bench.run import Client

    size, runs, last = sizes
    api = client.api
    reads: list[tuple[str, Callable[[], object], str]] = [
        ("!services", lambda: api.services(status=True), "services(status)"),
        ("!stacks", lambda: api.services(status=True), "services(status)"),
        (
            "!ps bs00_s00",
            lambda: (
                api.inspect_service("bs00_s00"),
                api.tasks(filters={"service": "bs00_s00"}),
                api.nodes(),
            ),
            "inspect, tasks(service), nodes",
        ),
    ]
    rows = []
    async with Client(env) as chat:
        for command, sdk, what in reads:
            await chat.ask(command)  # warm
            bot = statistics.median([await chat.ask(command) for _ in range(runs)])
            floor = timed(sdk, runs)
            row = beside(f"`{command}` at {size} services", bot, (f"SDK {what}", floor), last)
            rows.append(row)
        names = stack_names(stacks)
        bot = sum([await chat.ask(f"!diff {stack}") for stack in names])
    start = time.perf_counter()
    for stack in names:  # the same reads: the file rendered by the CLI, the stack's services
        subprocess.run(
            [cli, "stack", "config", "-c", str(env.stacks_dir / f"{stack}.yaml")],
            capture_output=True, check=True,
        )  # fmt: skip
        api.services(filters={"label": f"com.docker.stack.namespace={stack}"})
    floor = time.perf_counter() - start
    rows.append(
        beside(
            f"`!diff` of each of the {stacks} stacks at {size} services",
            bot,
            ("`docker stack config` and SDK services(stack), per stack:", floor),
            last,
            show=secs,
            against="the CLI and SDK",
        )
    )
    return rows


class Looks:
    """The notice watcher in this process, talking to Docker through the counting proxy:
    what one look costs, full and named."""

    def __init__(self, env: BotEnv, proxy_path: Path) -> None:
        config = load(env.config, commands=REGISTRY)
        queue = WorkerQueue(sync_client(config.redis_url), config.redis_prefix,
                            config.signing_secret, "bench-looks")  # fmt: skip
        counted = docker.DockerClient(base_url=f"unix://{proxy_path}", version="1.41")
        self.watcher = Watcher(config, lambda: counted, queue, Notices(config, queue),
                               threading.Event())  # fmt: skip
        self.watcher.refresh()  # the first look only learns

    def cost(
        self,
        look: Callable[[], None],
        proxy: Any,
        runs: int,
        before: Callable[[], None] = lambda: None,
    ) -> tuple[float, float, int]:
        """Median wall and CPU time of ``look``, and its Engine API calls; ``before`` each
        (not counted): the change it looks at."""
        walls, cpus, calls = [], [], 0
        for _ in range(runs):
            before()
            proxy.take()
            wall, cpu = time.perf_counter(), time.thread_time()
            look()
            cpus.append(time.thread_time() - cpu)
            walls.append(time.perf_counter() - wall)
            calls = sum(proxy.take().values())
        return statistics.median(walls), statistics.median(cpus), calls


def look_rows(
    env: BotEnv, client: docker.DockerClient, proxy: Any, size: int, runs: int
) -> list[Row]:
    looks = Looks(env, proxy.path)
    watcher = looks.watcher
    full = looks.cost(watcher.refresh, proxy, runs)
    target = client.services.get("bs00_s01")
    replicas = [0]

    def change() -> None:  # what an event would name (replicas 0 <-> 1)
        replicas[0] = 1 - replicas[0]
        target.reload()
        target.scale(replicas[0])

    named_cost = looks.cost(lambda: watcher.refresh({target.id}, nodes=False), proxy, runs, change)
    floor = timed(lambda: (client.api.services(status=True), client.api.nodes()), runs)
    return [
        [
            f"notice watcher, full look at {size} services",
            f"{ms(full[0])} (CPU {ms(full[1])})",
            f"SDK services(status) and nodes {ms(floor)}",
            f"{full[2]} Engine API calls; every poll_seconds (15 s), the safety net",
            "-",
        ],
        [
            f"notice watcher, a look at one changed service at {size} services",
            f"{ms(named_cost[0])} (CPU {ms(named_cost[1])})",
            f"the full look {ms(full[0])}",
            f"{named_cost[2]} Engine API calls; "
            "grows with the services changed, not with the swarm",
            "-",
        ],
    ]


def grow(cli: str, stacks_dir: Path, stacks: int, per_stack: int) -> float:
    """Write the files with ``per_stack`` services and deploy them with the CLI (which
    creates what is new)."""
    names = write_stacks(stacks_dir, stacks, per_stack)
    return cli_deploy_all(cli, stacks_dir, names, wait=False)


def bench_scale(
    work: Path, redis_url: str, client: docker.DockerClient, cli: str, proxy: Any, smoke: bool
) -> tuple[list[Row], int]:
    """The services rows; the stacks are left running for the caller's rows at the largest
    size (notices, memory). Returns the rows and the number of services."""
    stacks = stack_count(smoke)
    sizes = (2, 3) if smoke else (2, 10, 40)
    runs = 3 if smoke else 10
    env = BotEnv(work, redis_url, "bench-scale", deadline=600)
    names = write_stacks(env.stacks_dir, stacks, sizes[0])
    env.start_worker()
    rows: list[Row] = []
    try:
        rows.append(deploy_all_row(env, cli, client, names))
        for per_stack in sizes:
            if per_stack != sizes[0]:
                took = grow(cli, env.stacks_dir, stacks, per_stack)
                print(f"grown to {stacks * per_stack} services in {took:.0f} s", file=sys.stderr)
            size = stacks * per_stack
            last = per_stack == sizes[-1]
            rows += asyncio.run(read_rows(env, client, cli, stacks, (size, runs, int(last))))
            rows += look_rows(env, client, proxy, size, runs)
    finally:
        env.stop_worker()
    return rows, stacks * sizes[-1]


def bench_nodes(work: Path, redis_url: str, smoke: bool) -> list[Row]:
    """`!nodes` and a node's death told, on the tests' own swarm of 3 and of 20 nodes."""
    from tests.cluster import Cluster, cluster_bot

    rows: list[Row] = []
    sizes = ((1, 1),) if smoke else ((2, 1), (19, 3))
    for workers, trials in sizes:
        cluster = Cluster(f"bench{workers + 1}", workers=workers)
        started = time.perf_counter()
        cluster.start()
        print(f"{workers + 1} nodes up in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        try:
            with cluster_bot(cluster, work, redis_url, f"bench-nodes{workers}", 60) as env:
                last = workers == sizes[-1][0]
                rows += nodes_rows(cluster, env, workers, trials, smoke, last)
        finally:
            cluster.stop()
    return rows


def nodes_rows(
    cluster: Any, env: Any, workers: int, trials: int, smoke: bool, last: bool
) -> list[Row]:
    """`!nodes` and node deaths on one cluster; the read's target (2x) at the largest
    (``last``), where the chat round trip's fixed cost weighs least."""
    from bench.run import Client

    rows: list[Row] = []
    api = cluster.client().api

    async def ask_nodes(runs: int = 3 if smoke else 10) -> float:
        async with Client(env) as chat:
            await chat.ask("!nodes")
            return statistics.median([await chat.ask("!nodes") for _ in range(runs)])

    bot = asyncio.run(ask_nodes())
    floor = timed(
        lambda: (api.nodes(), api.tasks(filters={"desired-state": "running"})),
        3 if smoke else 10,
    )
    count = len(api.nodes())
    rows.append(beside(f"`!nodes` at {count} nodes", bot, ("SDK nodes and tasks", floor), last))
    delays = [node_down_delay(cluster, env, f"worker{workers - t}", api)
              for t in range(trials)]  # fmt: skip
    rows.append(
        [
            f"node down to its notice at {count} nodes ({trials} killed)",
            f"max {ms(max(delays))}",
            "swarm marking the node down (the SDK polled every 10 ms)",
            "each: " + ", ".join(ms(d) for d in delays) + "; target within 1 s",
            "met" if max(delays) < 1 else "missed",
        ]
    )
    return rows


def node_down_delay(cluster: Any, env: Any, node: str, api: Any) -> float:
    """Kill ``node``; seconds from swarm marking it down to the notice in chat."""
    cluster.kill_node(node)

    def down() -> float | None:
        states = {n["Description"]["Hostname"]: n["Status"]["State"] for n in api.nodes()}
        return time.perf_counter() if states.get(node) == "down" else None

    marked = wait_until(down, 120, f"swarm to mark {node} down", interval=0.01)
    told = wait_until(
        lambda: time.perf_counter() if env.notices(f"node {node} is down") else None,
        60,
        f"the notice of {node}",
        interval=0.005,
    )
    return float(told - marked)
