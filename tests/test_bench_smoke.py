"""The benchmark code must keep working: run it at tiny sizes (figures not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import docker
import pytest

from tests.harness import ROOT

pytestmark = pytest.mark.swarm


def test_bench_smoke_run_writes_every_row(tmp_path: Path, swarm: docker.DockerClient) -> None:
    out = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    for row in [
        "`!services` round trip, 3 services",
        "Engine API calls, 3 services",
        "Engine API calls per wait poll",
        "queue throughput",
        "enqueue to answer",
        "deploy of a 2-service stack",
        "outside change to notice",
        "RSS of the bot",
        "RSS of the worker",
        "`!deploy all`, the repository's 3 stacks",
        "registry requests per image check, 3 services on 2 images",
        "Matrix `!ping`, command to answer",
        "Matrix `!services`, command to answer",
        "Slack `!ping`, command to answer",
        "Slack `!services`, command to answer",
        "`!deploy all`, 4 small stacks",
        "`!services` at 12 services",
        "`!stacks` at 12 services",
        "`!ps bs00_s00` at 12 services",
        "`!diff` of each of the 4 stacks at 12 services",
        "notice watcher, full look at 12 services",
        "notice watcher, a look at one changed service at 12 services",
        "outside change to notice in chat (2 changes at 12 services)",
        "RSS of the worker at 12 services",
        "`!nodes` at 2 nodes",
        "node down to its notice at 2 nodes",
    ]:
        assert row in text, f"{row!r} missing from\n{text}"
