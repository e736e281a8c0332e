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
    entry.update({k: str(v) for k, v in fields.items() if v not in (None, "")})
    text = json.dumps(entry, ensure_ascii=False, sort_keys=True)
    # Searched once as one text; masked field by field only if a secret may be in it, and
    # masked before it is cut: a secret cut in half would no longer be recognised.
    mask = masker()
    masked = mask.may_be_in_json(text)
    if masked:
        entry = {k: mask.text(v) for k, v in entry.items()}
    if masked or any(len(v) > 300 for v in entry.values()):
        entry = {k: v[:300] for k, v in entry.items()}
        text = json.dumps(entry, ensure_ascii=False, sort_keys=True)
    # The JSON text for plain logs; the same entry as fields (and its job id) for JSON logs.
    log.info(text, extra={"fields": {"audit": entry}, "job": entry.get("job")})
    return entry
