"""A Redis that survives losing a node, as the tests run it: three "nodes" on loopback,
each a redis-server and a sentinel beside it (Debian's redis-sentinel is redis-server
started with ``--sentinel``), one master and two replicas. ``kill_master`` is the master's
node dying: its Redis and its sentinel SIGKILLed together."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.harness import free_port, wait_until

MASTER = "swarmbot"
DOWN_AFTER_MS = 1000


class SentinelRedis:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.redis_ports = [free_port() for _ in range(3)]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.argv: dict[int, list[str]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}"

    def start(self) -> None:
        first = self.redis_ports[0]
        for i, port in enumerate(self.redis_ports):
            node = self.dir / f"node{i}"
            node.mkdir(exist_ok=True)
            replica = ["--replicaof", "127.0.0.1", str(first)] if i else []
            self._spawn(
                port,
                [
                    *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(node), *replica),
                ],
            )
        for port in self.redis_ports:
            wait_until(lambda p=port: _pings(p), 10, f"redis {port} to answer")
        wait_until(lambda: self._replicas(first) == 2, 20, "both replicas to sync")
        for i, port in enumerate(self.sentinel_ports):
            conf = self.dir / f"node{i}" / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {conf.parent}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {first} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} 2000\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            self._spawn(port, ["redis-server", str(conf), "--sentinel"])
        for port in self.sentinel_ports:
            wait_until(lambda p=port: self._sentinels_known(p), 20, "the sentinels to meet")

    def _spawn(self, port: int, argv: list[str]) -> None:
        log = (self.dir / f"{port}.log").open("ab")
        self.argv[port] = argv
        self.procs[port] = subprocess.Popen(argv, stdout=log, stderr=log)

    def revive(self) -> None:
        """The dead node back (its Redis as it was started: the sentinels make it a replica
        of the new master; its sentinel from the config it rewrote), and all three healthy
        again: a master with two replicas in sync, sentinels that agree."""
        for port in [p for p in self.argv if p not in self.procs]:
            self._spawn(port, self.argv[port])

        def healthy() -> bool:
            try:
                master = self.master_port()
            except AssertionError:
                return False
            return (
                _role(master) == "master"
                and self._replicas(master) == 2
                and all(self._sentinels_known(p) for p in self.sentinel_ports)
            )

        wait_until(healthy, 60, "the three Redis nodes to be healthy again", interval=0.2)

    def master_port(self) -> int:
        for port in self.sentinel_ports:
            if port not in self.procs:
                continue
            try:
                addr = redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(
                    MASTER
                )
            except redis.RedisError:
                continue
            if addr:
                return int(addr[1])
        raise AssertionError("no sentinel names a master")

    def kill_master(self) -> int:
        """SIGKILL the master and the sentinel on its node; returns the old master's port."""
        port = self.master_port()
        node = self.redis_ports.index(port)
        for victim in (port, self.sentinel_ports[node]):
            proc = self.procs.pop(victim)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        return port

    def stop_redis(self, port: int) -> None:
        """One Redis SIGKILLed, its sentinel left running (a replica lost)."""
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def wait_new_master(self, old: int, timeout: float = 30) -> tuple[int, float]:
        """The new master's port, once a replica was promoted; and when (perf_counter)."""
        port = wait_until(
            lambda: (p := self.master_port()) != old and _role(p) == "master" and p,
            timeout,
            "a replica to be promoted",
            interval=0.05,
        )
        return int(port), time.perf_counter()

    def stop(self, kill: bool = False) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        for proc in self.procs.values():
            proc.wait(10)
        self.procs.clear()

    def _replicas(self, port: int) -> int:
        """Replicas connected and streaming (state=online)."""
        info = redis.Redis(port=port, socket_timeout=1).info("replication")
        return sum(
            1
            for key, value in info.items()
            if key.startswith("slave")
            and isinstance(value, dict)
            and value.get("state") == "online"
        )

    def _sentinels_known(self, port: int) -> bool:
        try:
            info = redis.Redis(port=port).sentinel_master(MASTER)
        except redis.RedisError:
            return False
        return int(info.get("num-other-sentinels", 0)) >= 2 and not str(
            info.get("flags", "")
        ).count("down")


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _role(port: int) -> str:
    try:
        return str(redis.Redis(port=port, socket_timeout=1).info("replication").get("role"))
    except redis.RedisError:
        return ""
