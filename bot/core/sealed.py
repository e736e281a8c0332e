"""Records that are read back from Redis and acted on, sealed like jobs.

A job is signed; a confirmation, an approval or a watcher's remembered state used to be
plain JSON, so anyone able to write to Redis could write a confirmation "by the admin" and
have the bot sign a job for it. Every such record is now sealed: an HMAC-SHA256 over a
domain tag, the Redis key it lives under and its exact bytes, with the signing secret both
processes hold. Binding the key means a genuine record copied under another key (another
confirmation code, another stack's state) is refused too.

A sealed value is ``<hex signature>.<json>``: one string, so it fits a plain ``SET`` and
keeps the TTLs and ``NX``/``XX`` semantics the callers rely on.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from bot.core.config import Secret
from bot.core.wire import sign

_TAG = b"swarmbot-record-v1\0"
MAX_RECORD_BYTES = 64 * 1024


class Forged(Exception):
    """A record that is not what the bot or worker wrote: unsigned, altered, moved,
    malformed. The message says which, for the log; never shown in chat."""


def _mac(secret: Secret, key: str, body: bytes) -> str:
    return sign(_TAG, key.encode() + b"\0" + body, secret)


def seal(secret: Secret, key: str, value: Any) -> str:
    """``value`` (anything JSON can hold) as the sealed text to store under ``key``."""
    body = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return f"{_mac(secret, key, body.encode())}.{body}"


def unseal(secret: Secret, key: str, raw: Any) -> Any:
    """The value sealed under ``key``; raises ``Forged`` for anything else."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        raise Forged(f"not a string ({type(raw).__name__})")
    if len(raw) > MAX_RECORD_BYTES:
        raise Forged(f"{len(raw)} bytes is too large")
    sig, dot, body = raw.partition(".")
    if not dot or len(sig) != 64:
        raise Forged("unsealed")
    if not hmac.compare_digest(_mac(secret, key, body.encode()).encode(), sig.encode()):
        raise Forged("bad seal")
    try:
        return json.loads(body)
    except ValueError:
        raise Forged("sealed text is not JSON") from None


def unseal_dict(secret: Secret, key: str, raw: Any) -> dict[str, Any]:
    """A sealed JSON object (a confirmation, a watcher's state)."""
    value = unseal(secret, key, raw)
    if not isinstance(value, dict):
        raise Forged("not an object")
    return value
