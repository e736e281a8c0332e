"""What reaches chat from logs and errors has its secrets masked."""

import pytest

from bot.core.scrub import env_values, scrub

pytestmark = pytest.mark.unit


def test_environment_values_are_masked() -> None:
    values = env_values(["DB_URL=postgres://u:hunter22@db/x", "MODE=on", "SITE=example.org"])
    out = scrub("connecting to postgres://u:hunter22@db/x for example.org mode on", values)
    assert "hunter22" not in out and "example.org" not in out
    assert "mode on" in out  # two-letter values are left alone


def test_credential_patterns_are_masked() -> None:
    lines = [
        "password=hunter2 ok",
        'config: {"api_key": "abcd1234efgh"}',
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "slack token xoxb-123456789-abcdefghijkl",
        "matrix syt_c3dhcm1ib3Q_abcdefghijklmnop_1234",
        "aws AKIAIOSFODNN7EXAMPLE",
        "redis://default:s3cretpass@redis:6379/0",
        "SECRET_TOKEN: 'tok-99887766'",
    ]
    out = scrub("\n".join(lines))
    for secret in [
        "hunter2",
        "abcd1234efgh",
        "eyJhbGciOiJIUzI1NiJ9",
        "xoxb-123456789",
        "syt_c3dh",
        "AKIAIOSFODNN7EXAMPLE",
        "s3cretpass",
        "tok-99887766",
    ]:
        assert secret not in out, f"{secret} leaked:\n{out}"
    assert "redis://default:***@redis:6379/0" in out
    assert "password=***" in out
