"""Which nodes each named volume has been used on, kept in Redis (swarm's task history is
short): ``<prefix>:volumes``, a hash of volume -> JSON ``{"stack", "driver", "portable",
"services", "nodes": {host: first seen}}``. A record someone replaced with something else is
read as absent and written anew."""

from __future__ import annotations

import json
from typing import Any

import redis

from bot.queue.errors import WrongType
from bot.queue.keys import Keys
from bot.queue.text import fields


class VolumeStore:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._key = keys.volumes

    def all(self) -> dict[str, dict[str, Any]]:
        try:
            raw = fields(self._redis.hgetall(self._key))
        except WrongType:
            self._redis.delete(self._key)
            return {}
        out = {}
        for volume, text in raw.items():
            record = _record(text)
            if record is not None:
                out[volume] = record
        return out

    def record(
        self, seen: list[dict[str, Any]], now: float
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """Merge what running tasks show (``volume``, ``node``, ``service``, ``stack``,
        ``driver``, ``portable`` each); returns (volume, node, record before) for each node
        a volume is seen on for the first time while it had been used elsewhere."""
        known = self.all()
        firsts = []
        changed: dict[str, dict[str, Any]] = {}
        for use in seen:
            volume = use["volume"]
            before = known.get(volume) or {"nodes": {}, "services": []}
            record = changed.get(volume) or json.loads(json.dumps(before))
            if use["node"] not in record["nodes"]:
                # Against the record before this look: a volume seen on two nodes at its
                # first look (two replicas, each with its own) moved nowhere.
                if before["nodes"]:
                    firsts.append((volume, use["node"], before))
                record["nodes"][use["node"]] = now
            record["services"] = sorted({*record["services"], use["service"]})
            record.update(stack=use["stack"], driver=use["driver"], portable=use["portable"])
            changed[volume] = record
        if changed:
            self._redis.hset(self._key, mapping={v: json.dumps(r) for v, r in changed.items()})
        return firsts


def _record(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("nodes"), dict):
        return None
    if not isinstance(value.get("services"), list):
        return None
    return value
