"""Before a deploy: what is wrong with a stack file (``check``), what a deploy would change
(``diff``), the fingerprints and versioned names a deploy leaves behind (``hashes``), and
the order of ``!deploy all`` (``order``). Pure functions over the rendered file and Engine
API dicts: the worker fetches, these judge.
"""

from bot.swarm.preflight.check import (
    IGNORED_KEYS,
    Problem,
    SwarmSnapshot,
    check,
    unset_variables,
    volume_sources,
)
from bot.swarm.preflight.diff import REMOVED, by_hand, diff
from bot.swarm.preflight.hashes import (
    HASH_LABEL,
    TASK_HASH_LABEL,
    hash_override,
    object_names,
    service_hash,
    task_hash,
)
from bot.swarm.preflight.order import OrderError, deploy_needs, deploy_order, needs, order_of

__all__ = [
    "HASH_LABEL",
    "IGNORED_KEYS",
    "REMOVED",
    "TASK_HASH_LABEL",
    "OrderError",
    "Problem",
    "SwarmSnapshot",
    "by_hand",
    "check",
    "deploy_needs",
    "deploy_order",
    "diff",
    "hash_override",
    "needs",
    "object_names",
    "order_of",
    "service_hash",
    "task_hash",
    "unset_variables",
    "volume_sources",
]
