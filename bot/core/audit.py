"""The audit trail: every command, who, where, what was decided, and how its job ended.

Kept twice on purpose: in a capped Redis stream (for ``!audit`` in chat; written by
``bot.queue.records``) and as JSON lines in the log (for the log pipeline, which outlives
Redis). Entries never carry secrets: the
command text is what the user typed, and arguments are names.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bot.core.scrub import masker

log = logging.getLogger("swarmbot.audit")


def entry(fields: dict[str, Any]) -> dict[str, str]:
    """An audit entry from ``fields``: stamped, masked, cut to size, and written to the log
    (the Redis side is ``bot.queue.records``)."""
    entry = {"at": f"{time.time():.3f}"}
    # Masked before it is cut: a secret cut in half would no longer be recognised.
    mask = masker()
    entry.update({k: mask.text(str(v))[:300] for k, v in fields.items() if v not in (None, "")})
    # The JSON text for plain logs; the same entry as fields (and its job id) for JSON logs.
    log.info(
        json.dumps(entry, ensure_ascii=False, sort_keys=True),
        extra={"fields": {"audit": entry}, "job": entry.get("job")},
    )
    return entry
