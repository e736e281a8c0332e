"""The signed envelopes: a big honest result passes; a big job, or any tampering, does not."""

from __future__ import annotations

import time

import pytest

from bot.core.config import Secret
from bot.core.wire import (
    Job,
    Rejected,
    Result,
    decode_job,
    decode_result,
    encode_job,
    encode_result,
)
from commands import SCHEMAS

pytestmark = pytest.mark.unit

SECRET = Secret(b"k" * 40)


def test_a_result_listing_a_large_swarm_is_accepted() -> None:
    rows = [
        {"name": f"stack_service-{i:04d}", "image": "registry.example.org/x:1.2.3", "running": 1}
        for i in range(2000)
    ]
    fields = encode_result(
        Result("result", "7", "services", True, {"rows": rows}, {"inbox": "x"}), SECRET
    )
    assert len(fields["result"]) > 100_000
    assert decode_result(fields, SECRET, SCHEMAS).data["rows"] == rows


def test_an_oversized_job_is_refused() -> None:
    now = time.time()
    job = Job(
        "1",
        "ps",
        {"service": "web"},
        "console:admin",
        "x" * 500,
        {"inbox": "x" * 500},
        now,
        now + 60,
    )
    fields = encode_job(job, SECRET)
    fields["job"] = fields["job"][:-1] + " " * 20_000 + "}"
    with pytest.raises(Rejected, match="too large"):
        decode_job(fields, SECRET, now, 600, SCHEMAS)


def test_a_result_cannot_pass_for_a_job() -> None:
    now = time.time()
    result = encode_result(Result("result", "1", "ps", True, {}, {"inbox": "x"}), SECRET)
    with pytest.raises(Rejected, match="unsigned"):
        decode_job(result, SECRET, now, 600, SCHEMAS)
    forged = {"job": result["result"], "sig": result["sig"]}
    with pytest.raises(Rejected, match="bad signature"):
        decode_job(forged, SECRET, now, 600, SCHEMAS)
