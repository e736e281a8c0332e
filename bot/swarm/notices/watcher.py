"""The notice watcher: the story of every change made to the swarm outside the bot.

It runs in the worker, on one worker at a time (a lease in Redis). It follows Docker's
service and node events. After a burst of events it looks at the services the events named
(and those of a change held for its quiet period): it reads them alone from Docker and
their last state alone from Redis, so the look costs what changed, not the size of the
swarm. On (re)connecting the event stream, on taking the lease, and every ``poll_seconds``
it compares every service and node with the state it last saw (kept in Redis by
``bot.queue.noticestore``): the safety net for what no event names (a task that died: swarm
emits no event for it) and for a lost stream. What to tell is decided by pure functions
(``decide``); this module reads Docker and Redis for them, and posts what they say. Because
it compares state rather than trusting the events' content, a lost stream or a restarted
dockerd neither hides a change nor repeats one. The bot's own jobs tell their changes
themselves (``rooms``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any

import docker
import docker.errors
import requests.exceptions

from bot.core.config import Config
from bot.core.health import NOTICE_LOOKS, NOTICE_SERVICES_READ
from bot.core.ids import hostname
from bot.queue.consumer import WorkerQueue
from bot.queue.errors import StoreError
from bot.queue.noticestore import WatcherState
from bot.swarm.convergence import describe_task, failing_task
from bot.swarm.engine import API_VERSION
from bot.swarm.notices import decide, wording
from bot.swarm.notices.decide import Pending, Summary, Told, summarize
from bot.swarm.notices.rooms import Notices

log = logging.getLogger("swarmbot.notices")

DRIFT_POKE = "drift"  # wakes the source watcher to compare with git, without a fetch
DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)
# More services named by events than this between two looks (a stack deployed by hand): one
# full look is cheaper than a filter naming each.
MOST_NAMED = 64


@dataclass
class Named:
    """What events named since the last look, taken by the next one."""

    services: set[str] = field(default_factory=set)
    nodes: bool = False
    everything: bool = True  # the first look, a reconnected stream, a failed look


class Watcher:
    def __init__(
        self,
        config: Config,
        client_factory: Callable[[], docker.DockerClient],
        queue: WorkerQueue,
        notices: Notices,
        stop: threading.Event,
        serving: Callable[[], str] | None = None,
    ) -> None:
        self.config = config
        self.client_factory = client_factory
        self.queue = queue
        self.notices = notices
        self.store = notices.store
        self.stop = stop
        # The swarm ID this worker serves now; "" while its daemon is in another swarm:
        # then nothing is looked at, and nothing told.
        self.serving = serving
        self.poke = threading.Event()
        # Changes held for their quiet period live in Redis beside the state they were
        # found against, so a watcher that dies (or is replaced) mid-wait loses none.
        self.pending: dict[str, Pending] = {}
        self._lease = queue.lease(queue.keys.notice("leader"))
        self.refreshes = 0
        self._named = Named()
        self._named_lock = threading.Lock()
        self._last_full = 0.0  # monotonic time of the last full look
        self._leading = False
        self._ids: dict[str, str] = {}  # service name -> ID, as last seen

    def start(self) -> list[threading.Thread]:
        """Start the watcher's threads; returns them, for the worker's health check."""
        threads = [
            threading.Thread(target=self._follow_events, name="notice-events", daemon=True),
            threading.Thread(target=self._loop, name="notice-watch", daemon=True),
        ]
        for thread in threads:
            thread.start()
        return threads

    # -- threads ----------------------------------------------------------------------------

    def _follow_events(self) -> None:
        """Each service event pokes the watcher; a lost stream is reconnected with backoff."""
        backoff = 1.0
        while not self.stop.is_set():
            try:
                # Its own client without a read timeout: the stream is quiet for long stretches.
                client = docker.from_env(version=API_VERSION, timeout=None)  # type: ignore[arg-type]
                stream = client.events(decode=True, filters={"type": ["service", "node"]})
                self._note(everything=True)  # (re)connected: events may have been missed
                backoff = 1.0
                for event in stream:
                    if self.stop.is_set():
                        break
                    if event.get("Action") in ("create", "update", "remove"):
                        self._note_event(event)
            except DOCKER_ERRORS as exc:
                log.warning("docker event stream lost (%s); reconnecting in %.0fs", exc, backoff)
            except Exception:  # a malformed event: reconnect rather than stop watching
                log.exception("docker event stream failed; reconnecting in %.0fs", backoff)
            self.stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def _note_event(self, event: dict[str, Any]) -> None:
        """Remember what a service or node event names, for the next look."""
        actor = event.get("Actor") or {}
        object_id = actor.get("ID") if isinstance(actor, dict) else None
        if event.get("Type") == "service" and isinstance(object_id, str) and object_id:
            self._note(service=object_id)
        elif event.get("Type") == "node":
            self._note(nodes=True)
        else:  # an event that names nothing usable: look at everything
            self._note(everything=True)

    def _note(
        self, service: str = "", nodes: bool = False, everything: bool = False, wake: bool = True
    ) -> None:
        """``wake``: look now (an event); else at the next look that comes anyway."""
        with self._named_lock:
            if service:
                self._named.services.add(service)
            self._named.nodes |= nodes
            self._named.everything |= everything
        if wake:
            self.poke.set()

    def _take_named(self) -> Named:
        with self._named_lock:
            named, self._named = self._named, Named(everything=False)
        return named

    def _loop(self) -> None:
        while not self.stop.is_set():
            # While a change waits for its quiet period, look often; else wait for events.
            timeout = (
                min(0.1, self.config.notice_quiet_seconds / 5)
                if self.pending
                else self.config.notice_poll_seconds
            )
            if self.poke.wait(timeout):
                self.poke.clear()
                self.stop.wait(0.05)  # let a burst of events land: one look for all of them
            named = self._take_named()
            try:
                leading = self._lease.held() and (self.serving is None or bool(self.serving()))
                if leading:
                    self._look(named, taken_over=not self._leading)
                self._leading = leading
            except Exception as exc:
                # What it named is looked at again, all of it, when the loop next looks
                # (not at once: Docker or Redis down would make that a busy loop).
                self._note(everything=True, wake=False)
                if isinstance(exc, DOCKER_ERRORS):
                    log.warning("notice watcher: docker unavailable (%s)", exc)
                elif isinstance(exc, StoreError):
                    log.warning("notice watcher: redis unavailable (%s)", exc)
                else:  # malformed state in Redis, a bug: the next look tries again
                    log.exception("notice watcher: look failed")
                    self.stop.wait(1.0)

    def _look(self, named: Named, taken_over: bool) -> None:
        """A full look when one is due (see the module's docstring), else a look at what
        the events named and what is being followed; nothing named, nothing followed: no
        look at all."""
        due = time.monotonic() - self._last_full >= self.config.notice_poll_seconds
        if named.everything or taken_over or due or len(named.services) > MOST_NAMED:
            self._last_full = time.monotonic()
            self.refresh()
            return
        following = self._following()
        if named.services or following or named.nodes:
            self.refresh(named.services | following, nodes=named.nodes)

    def _following(self) -> set[str]:
        """Services a partial look includes although no event named them: those of a
        change held for its quiet period (to see it settle). A down node's moving tasks
        are followed by full looks (``refresh``)."""
        names = {name for held in self.pending.values() for name in held.changes}
        return {self._ids[n] for n in names if n in self._ids}

    def _remembered(
        self, state: dict[str, str], held: str | None
    ) -> tuple[dict[str, Any], dict[str, Pending]]:
        """What the last look saw, as stored in Redis. Malformed (bad JSON, other shapes:
        someone wrote there) it is dropped, logged, and this look only learns, as a
        first look does: no notice is made up from it, and the watcher goes on."""
        try:
            seen = {k: json.loads(v) for k, v in state.items()}
            pending = {k: Pending(**v) for k, v in json.loads(held).items()} if held else {}
            if not all(
                isinstance(v, dict) and v.keys() >= decide.SUMMARY_KEYS for v in seen.values()
            ):
                raise ValueError("a service's state is not a summary")
            if not all(decide.well_formed(p) for p in pending.values()):
                raise ValueError("a held change is malformed")
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("notice watcher: its state in Redis is malformed (%s); starting over", exc)
            return {}, {}
        return seen, pending

    def resign(self) -> None:
        """This worker is stopping: give up the lease so another worker watches at once."""
        self._lease.give_up()

    # -- comparing state ------------------------------------------------------------------------

    def refresh(self, only: Collection[str] | None = None, nodes: bool = True) -> None:
        """One look: compare services and nodes with the last look, tell what changed.
        ``only``: look at these services alone (and at the nodes if ``nodes``); None: at
        every service and node."""
        client = self.client_factory()
        self.refreshes += 1
        now = time.time()
        swarm = self.serving() if self.serving is not None else ""
        stored = self.store.read(only)
        if only is not None and (swarm != stored.swarm or stored.moving or not stored.nodes):
            # Another swarm, a node's tasks moving, or no full look stored yet: only a
            # full look can tell these.
            only, nodes, stored = None, True, self.store.read()
        if swarm != stored.swarm:
            # Another swarm than the one last seen (accepted by an admin): this look only
            # learns it; nothing of the old swarm is told as removed, nor the new as created.
            stored = WatcherState({}, None, None, {}, swarm)
        seen, self.pending = self._remembered(stored.services, stored.pending)
        first = only is None and not seen
        current = {s["ID"]: summarize(s) for s in self._services(client, only)}
        kind = "full" if only is None else "named"
        NOTICE_LOOKS.labels(kind).inc()
        NOTICE_SERVICES_READ.labels(kind).inc(len(current))
        if only is None:
            self._ids = {}
        self._ids.update({c["name"]: sid for sid, c in current.items()})
        for sid in decide.newly_unhealthy(seen, current, first=first):
            # Short of replicas: failing, or only being scheduled? Stored as healthy while
            # its tasks are on their way, so a later failure is still told.
            current[sid]["failing"] = self._failing(client, sid, now)
            current[sid]["healthy"] = not current[sid]["failing"]
        names = {n for c in (*current.values(), *seen.values()) for n in (c["stack"], c["name"])}
        decision = decide.services(
            seen,
            current,
            self.pending,
            claimed=self.notices.claimed_among(names),
            expected={} if first else self.store.expected({*current, *seen}),
            from_git=self.config.git is not None,
            now=now,
            first=first,
        )
        told = decision.told + decide.finished(
            current, self.pending, now, self.config.notice_quiet_seconds
        )
        nodes_seen = _json_object(stored.nodes)
        nodes_now: dict[str, dict[str, str]] | None = None
        consumed = decision.consumed
        if nodes:
            nodes_now = {
                n["ID"]: {
                    "host": hostname(n),
                    "status": (n.get("Status") or {}).get("State", "unknown"),
                    "availability": (n.get("Spec") or {}).get("Availability", "active"),
                }
                for n in client.api.nodes()
            }
            about_nodes = decide.nodes(
                nodes_seen, nodes_now, self.store.expected(nodes_now) if nodes_seen else {}, now
            )
            told += about_nodes.told
            consumed = consumed | about_nodes.consumed
            moving = dict(stored.moving)
            for node_id in about_nodes.down:
                ran = self._ran_on(client, node_id)
                if ran:
                    host = nodes_now[node_id]["host"]
                    moving[node_id] = json.dumps({"host": host, "services": ran})
            if only is None:
                told += self._tell_moves(client, current, nodes_now, moving)
        else:
            moving = dict(stored.moving)
        for notice in decision.begun + told:
            self.notices.post(
                notice.stack,
                notice.text,
                list(notice.lines),
                notice.key,
                notice.status,
                story=notice.story,
            )
        self.store.consume(consumed)
        self.store.save(
            current,
            {k: asdict(p) for k, p in self.pending.items()},
            nodes_now,
            moving,
            poke=DRIFT_POKE if decision.drifted else None,
            swarm=swarm,
            gone=None if only is None else set(seen) - set(current),
        )

    @staticmethod
    def _services(client: docker.DockerClient, only: Collection[str] | None) -> list[Any]:
        """Every service, or these alone (one call either way)."""
        if only is None:
            return list(client.api.services(status=True))
        if not only:
            return []
        # Docker's ID filter matches prefixes: a full ID could prefix nothing else, but
        # keep only exact matches anyway.
        wanted = set(only)
        found = client.api.services(filters={"id": sorted(wanted)}, status=True)
        return [s for s in found if s.get("ID") in wanted]

    def _ran_on(self, client: docker.DockerClient, node_id: str) -> list[str]:
        """The services a node that went down was running."""
        # Swarm may already have asked the node's tasks to shut down (and placed new ones):
        # what was running there is what the node last reported as running.
        tasks = client.api.tasks(filters={"node": node_id})
        return sorted(
            {
                t["ServiceID"]
                for t in tasks
                if t.get("ServiceID") and (t.get("Status") or {}).get("State") == "running"
            }
        )

    def _tell_moves(
        self,
        client: docker.DockerClient,
        services: dict[str, Summary],
        nodes: dict[str, dict[str, str]],
        moving: dict[str, str],
    ) -> list[Told]:
        """Once every service a down node ran is whole again (or the node is back), one
        notice says where their tasks run now; the node leaves ``moving``."""
        told = []
        for node_id, raw in list(moving.items()):
            record = _json_object(raw)
            if record is None or not isinstance(record.get("services"), list):
                log.warning(
                    "notice watcher: a malformed move record for node %s; dropped", node_id
                )
                del moving[node_id]
                continue
            mine = [services[sid] for sid in record["services"] if sid in services]
            back = nodes.get(node_id, {}).get("status") == "ready"
            if not back and not all(s["healthy"] for s in mine):
                continue
            placed: dict[str, list[dict[str, Any]]] = {}
            for sid in record["services"]:
                if sid in services:
                    tasks = client.api.tasks(filters={"service": sid, "desired-state": "running"})
                    placed[sid] = [
                        t for t in tasks if (t.get("Status") or {}).get("State") == "running"
                    ]
            if not back and any(t.get("NodeID") == node_id for ts in placed.values() for t in ts):
                continue  # swarm has not given up on the node's tasks yet
            lines = tuple(
                wording.placed_line(
                    services[sid]["name"],
                    sorted({nodes.get(t.get("NodeID", ""), {}).get("host", "?") for t in tasks}),
                )
                for sid, tasks in placed.items()
            )
            text = wording.tasks_placed(record["host"], back)
            told.append(Told("", text, lines, f"node-moved-{node_id}-{int(time.time())}"))
            del moving[node_id]
        return told

    def _failing(self, client: docker.DockerClient, sid: str, now: float) -> str:
        """Why a service short of its replicas is failing, or "" when its missing tasks
        are merely on their way (assigned, preparing, starting) with no recent failure."""
        task = failing_task(client.api.tasks(filters={"service": sid}), now)
        return describe_task(task) if task is not None else ""


def _json_object(raw: str | None) -> dict[str, Any] | None:
    """A JSON object the watcher stored, or None if there is none or it is malformed."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("notice watcher: a malformed record in Redis; treated as absent")
        return None
    return value if isinstance(value, dict) else None
