"""The order of ``!deploy all``: each stack after the stacks whose networks or volumes it
uses as external, and the configured ``deploy.first`` stacks before the rest."""

from __future__ import annotations

from pathlib import Path

import yaml


class OrderError(Exception):
    """Stacks that need each other: no order works."""


def needs(stack: str, raw: str, stacks: set[str]) -> set[str]:
    """The stacks whose networks or volumes this stack uses as external (``ingress_dev`` is
    stack ``ingress``'s network ``dev``)."""
    try:
        doc = yaml.safe_load(raw) or {}
    except yaml.YAMLError:
        return set()
    out = set()
    for kind in ("networks", "volumes"):
        for key, spec in (doc.get(kind) or {}).items():
            if isinstance(spec, dict) and spec.get("external"):
                name = str(spec.get("name") or key)
                owner = name.split("_", 1)[0]
                if "_" in name and owner in stacks and owner != stack:
                    out.add(owner)
    return out


def deploy_needs(files: dict[str, Path], first: tuple[str, ...]) -> dict[str, set[str]]:
    """What each stack waits for in ``!deploy all``: the stacks whose networks or volumes
    it uses as external, and, for every stack not in ``first``, the ``first`` stacks
    (unless that ``first`` stack itself needs it: the files win). The ``first`` stacks
    wait for nothing but their files' needs: they go together, before the rest."""
    names = set(files)
    deps = {
        name: needs(name, path.read_text(encoding="utf-8"), names) for name, path in files.items()
    }
    below = {name: _closure(name, deps) for name in names}
    present = [f for f in first if f in names]
    for name in names - set(present):
        deps[name] |= {f for f in present if name not in below[f]}
    return deps


def _closure(name: str, deps: dict[str, set[str]]) -> set[str]:
    """Every stack ``name`` needs, directly or through others."""
    seen: set[str] = set()
    todo = list(deps[name])
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(deps.get(dep, ()))
    return seen


def deploy_order(files: dict[str, Path], first: tuple[str, ...]) -> list[str]:
    """Every stack after the stacks it needs; among those free to go, the configured
    ``first`` ones in their order, then alphabetical. The order replies list stacks in."""
    return order_of(deploy_needs(files, first), first)


def order_of(deps: dict[str, set[str]], first: tuple[str, ...]) -> list[str]:
    """``deploy_order`` from needs already worked out (``deploy_needs``)."""
    names = set(deps)
    rank = {name: (first.index(name) if name in first else len(first), name) for name in names}
    order: list[str] = []
    while len(order) < len(names):
        ready = [n for n in names - set(order) if deps[n] <= set(order)]
        if not ready:
            stuck = sorted(names - set(order))
            raise OrderError(f"these stacks need each other: {', '.join(stuck)}")
        order.append(min(ready, key=rank.__getitem__))
    return order
