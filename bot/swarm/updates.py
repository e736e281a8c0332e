"""Which running services' images have news in their registry: the tag moved to another
digest, or (with a semver policy) a newer tag exists. Nothing is pulled.

One digest lookup per image reference (``busybox:1`` used by five services is asked
once), and, for stacks with a semver policy, one tag listing per repository.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.core.ids import IMAGE_LABEL, stack_of
from bot.swarm.registry import ImageRef, Registry, RegistryError, semver_newer


@dataclass
class ImageNews:
    image: str  # name:tag, as the registry is asked
    running: str  # the digest the services run ("" when the spec pins none)
    current: str  # the digest the tag points to now ("" when the registry did not say)
    newer: str  # a newer tag the stack's semver policy allows, or ""
    services: list[str] = field(default_factory=list)
    by_stack: dict[str, list[str]] = field(default_factory=dict)  # stack ("" none) -> services
    error: str = ""

    @property
    def stacks(self) -> list[str]:
        return [s for s in self.by_stack if s]

    @property
    def moved(self) -> bool:
        return bool(self.running and self.current and self.running != self.current)


def running_images(services: list[dict[str, Any]]) -> dict[str, ImageNews]:
    """The services grouped by the image reference they run (``name:tag``)."""
    found: dict[str, ImageNews] = {}
    for service in services:
        spec = service["Spec"]
        image = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", "")
        if not image:
            continue
        ref = ImageRef.parse(image)
        # The digest swarm pinned at deploy (--resolve-image always); a spec written with a
        # digest and no tag has no tag to move.
        news = found.setdefault(ref.name, ImageNews(ref.name, ref.digest, "", ""))
        news.running = news.running or ref.digest
        news.services.append(spec["Name"])
        news.by_stack.setdefault(stack_of(spec.get("Labels")), []).append(spec["Name"])
        if "@" in (spec.get("Labels") or {}).get(IMAGE_LABEL, ""):
            news.error = "pinned by digest in the stack file: no tag to follow"
    return found


def check(
    registry: Registry,
    services: list[dict[str, Any]],
    semver_for: Callable[[str], str],
) -> list[ImageNews]:
    """Ask the registry about every image the services run, once each."""
    images = running_images(services)
    for news in images.values():
        if news.error:
            continue
        ref = ImageRef.parse(news.image)
        try:
            news.current = registry.digest(ref)
            levels = [semver_for(s) for s in news.stacks]
            level = max(levels, key=("", "patch", "minor", "major").index, default="")
            if level:
                news.newer = semver_newer(registry.tags(ref), ref.tag, level)
        except RegistryError as exc:
            news.error = str(exc)
    return sorted(images.values(), key=lambda n: n.image)
