"""Names of stacks and services: what is well-formed, and how a typed name resolves.

Used on both sides of the queue: the bot rejects malformed names before queueing, and the
worker checks them again because it trusts nothing it reads from Redis.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Stack names are file names in the stacks directory. No '_' (it separates stack and
# service in service names), no '.', no '/': a path can never be spelled as a stack.
STACK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
# Docker's own rule for service names, a little tighter on length.
SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# A git ref as chat may name one after `@` (`!deploy dev@v1.2`): a commit (7-40 hex digits),
# a tag or a branch. Never starting with '-' (it would read as a git option), no '..', '@{',
# '//' or '.lock' ending (git's own check-ref-format rules), no spaces or shell characters.
GIT_REF = re.compile(
    r"^(?!.*\.\.)(?!.*//)(?!.*@\{)(?!.*\.lock$)[A-Za-z0-9_][A-Za-z0-9._/+-]{0,99}(?<![./])$"
)
STACK_LABEL = "com.docker.stack.namespace"
COMMIT_LABEL = "swarmbot.commit"  # the git commit whose files were deployed
PREVIOUS_COMMIT_LABEL = "swarmbot.commit.previous"  # the one deployed before it (!rollback)
IMAGE_LABEL = "com.docker.stack.image"  # the image as written in the stack file


def stack_of(labels: dict[str, str] | None) -> str:
    """The stack a service belongs to: its stack label, else nothing ("").

    The label, not the name prefix: ``docker service create --name dev_x`` is not in dev.
    """
    return (labels or {}).get(STACK_LABEL, "")


def matches_any(name: str, globs: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)


def stacks_named_by(name: str) -> tuple[str, ...]:
    """The stacks a typed name can be seen to belong to without asking the swarm: itself
    (a stack, as ``!rollback dev`` names one) and the prefix of a ``<stack>_<service>``
    name. The bot decides from this who must approve a command; the worker refuses a job
    whose service turned out to be in a two-approver stack the bot could not see (a short
    name such as ``gerrit``), so the rule holds either way."""
    stack, sep, _ = name.partition("_")
    return (name, stack) if sep else (name,)


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving a typed service name: one match, or why there is none."""

    match: str | None
    candidates: tuple[str, ...] = ()
    ambiguous: bool = False  # several services fit exactly; else candidates are suggestions


def resolve_service(typed: str, names: Sequence[str]) -> Resolution:
    """Resolve a name as an operator types it: ``gerrit`` finds ``dev_gerrit``.

    An exact name wins. Otherwise the name is looked up as the part after the stack
    prefix; two stacks with the same service make it ambiguous, and the reply lists both
    rather than guessing. An unknown name lists close spellings, never picks one.
    """
    if typed in names:
        return Resolution(typed)
    suffixed = sorted(n for n in names if "_" in n and n.split("_", 1)[1] == typed)
    if len(suffixed) == 1:
        return Resolution(suffixed[0])
    if suffixed:
        return Resolution(None, tuple(suffixed), ambiguous=True)
    close = difflib.get_close_matches(typed, names, n=5, cutoff=0.6)
    shorts = {n.split("_", 1)[1] for n in names if "_" in n}
    for short in difflib.get_close_matches(typed, sorted(shorts), n=5, cutoff=0.6):
        close += sorted(
            n for n in names if n.endswith(f"_{short}") and n.split("_", 1)[1] == short
        )
    contains = [n for n in names if typed.lower() in n.lower()]
    return Resolution(None, tuple(dict.fromkeys(close + contains))[:8])


def hostname(node: Mapping[str, Any]) -> str:
    """How every answer and notice names a node (an Engine API dict): its hostname, or the
    start of its ID when it reports none."""
    return str((node.get("Description") or {}).get("Hostname") or node.get("ID", "")[:12])


def image_tag(spec: Mapping[str, Any]) -> str:
    """A service spec's image as the operator wrote it: the stack's image label if there is
    one, and never the digest swarm pinned (``...@sha256:...``). One definition for the
    listing, the diff and the notices, so they never disagree about what runs."""
    labels = spec.get("Labels") or {}
    container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    image = labels.get(IMAGE_LABEL) or container.get("Image", "")
    return str(image).split("@", 1)[0]


# Confirmation codes: no 0/O, 1/I/L, since they are read off a screen and typed by hand.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 4


def confirmation_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
