"""``swarmbot doctor`` and ``!doctor``: one line per check, with the fix when it fails."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from bot.core import doctor
from tests.harness import ROOT, BotEnv, free_port


@pytest.mark.unit
def test_ipvs_loaded_or_there_to_load_or_missing(tmp_path: Path) -> None:
    modules = tmp_path / "modules"
    modules.write_text("nf_nat 49152 2 - Live 0x0\nip_vs 188416 0 - Live 0x0\n")
    assert doctor.ipvs(str(modules), str(tmp_path)).ok
    modules.write_text("nf_nat 49152 2 - Live 0x0\n")
    ko = tmp_path / os.uname().release / "kernel/net/netfilter/ipvs"
    missing = doctor.ipvs(str(modules), str(tmp_path))
    assert not missing.ok and "host-network override" in missing.line()
    ko.mkdir(parents=True)
    (ko / "ip_vs.ko.xz").write_bytes(b"")
    assert doctor.ipvs(str(modules), str(tmp_path)).detail.startswith("the ip_vs module is there")


@pytest.fixture()
def http_port() -> Iterator[int]:
    port = free_port()
    server = http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield port
    finally:
        server.shutdown()


@pytest.mark.unit
def test_an_endpoint_that_answers_any_status_is_reached(http_port: int) -> None:
    found = doctor.reachable("homeserver", f"http://127.0.0.1:{http_port}/nope", "fix it")
    assert found.ok and "HTTP 404" in found.detail
    refused = doctor.reachable("homeserver", f"http://127.0.0.1:{free_port()}/", "fix it")
    assert not refused.ok and refused.line().endswith("(fix: fix it)")


@pytest.mark.unit
def test_the_chat_endpoints_are_read_from_the_file_as_it_is(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[bot]\nadapters = ["matrix"]\n[matrix]\nhomeserver = "https://hs.example.org/"\n'
    )
    assert doctor.chat_endpoints(config) == [
        ("homeserver", "https://hs.example.org/_matrix/client/versions")
    ]


@pytest.mark.swarm
def test_swarmbot_doctor_in_a_workers_place(
    workdir: Path, redis_url: str, swarm: docker.DockerClient
) -> None:
    env = BotEnv(workdir, redis_url, "doctor")
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "doctor", "--config", str(env.config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env.env(),
        timeout=60,
    )
    host = swarm.info()["Name"]
    lines = proc.stdout.splitlines()
    assert "ok   redis: reachable" in lines, proc.stdout + proc.stderr
    assert any(
        line.startswith("ok   docker: swarm ") and f"node {host} (manager)" in line
        for line in lines
    ), proc.stdout
    assert any(" ipvs: " in line for line in lines), proc.stdout
    assert proc.returncode == (0 if all(line.startswith("ok") for line in lines) else 1)


@pytest.mark.swarm
def test_doctor_in_chat(workdir: Path, redis_url: str) -> None:
    env = BotEnv(workdir, redis_url, "doctor-chat")
    env.start_in_process()
    out = env.chat("!doctor")
    assert "checks on the worker" in out, out
    assert "ok   redis: reachable" in out, out
    assert "ok   docker: swarm " in out, out
