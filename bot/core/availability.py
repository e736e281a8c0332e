"""How a node's availability is said, in one place: ``!nodes``, the answers and notices of
``!drain``, ``!pause`` and ``!activate``, the notice watcher, and a drain's pre-flight all
use these words, so a reader sees one name for one state."""

from __future__ import annotations

AVAILABILITIES = ("active", "pause", "drain")  # as swarm spells them
# The state, as a person says it: "worker2 was already drained".
STATE = {"active": "active", "pause": "paused", "drain": "drained"}
# The change, as a notice says it: "node worker2 activated by ...".
CHANGE = {"active": "activated", "pause": "paused", "drain": "drained"}


def state_word(availability: str) -> str:
    return STATE.get(availability, availability)


def change_word(availability: str) -> str:
    return CHANGE.get(availability, availability)
