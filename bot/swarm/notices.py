"""Deploy notices: the story of every change to the swarm, posted where config routes it.

Two sources, one notice per change:
- Jobs of the bot post their own notice when they end (who, what changed, outcome, time),
  and *claim* their stack or service while they run, so the watcher stays quiet about them.
- The watcher (in the worker; one at a time across workers, by a lease in Redis) follows
  Docker's service events, and on each burst, on reconnecting, and every ``poll_seconds``
  compares every service with the state it last saw, kept in Redis. Spec changes nobody
  claimed become "changed outside the bot" notices, held until swarm's update finishes so
  they carry the outcome; swarm rolling back or pausing an update, and services losing
  tasks, become failure notices. Because it compares state rather than trusting the event
  stream, a lost stream or a restarted dockerd neither hides a change nor repeats one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any

import docker
import docker.errors
import redis
import requests.exceptions

from bot.core.config import Config
from bot.core.health import NOTICES
from bot.core.ids import COMMIT_LABEL, image_tag, matches_any, stack_of
from bot.core.sealed import Forged, seal, unseal
from bot.core.wire import Result
from bot.queue.consumer import WorkerQueue
from bot.queue.scripts import NEXT_ID
from bot.swarm.convergence import describe_task, failing_task, parse_time
from bot.swarm.engine import API_VERSION
from bot.swarm.lease import Lease
from bot.swarm.placement import hostname

log = logging.getLogger("swarmbot.notices")

TERMINAL = {"completed", "rollback_completed", "paused", "rollback_paused"}
# Task states of a task on its way to running: a service short of its replicas only
# because of these is being scheduled (a scale-up, a node replaced), not unhealthy.
ON_THE_WAY = {
    "new",
    "allocated",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
}
FAILED_RECENTLY_SECONDS = 60.0
FAILING = {"rollback_started", "rollback_completed", "paused", "rollback_paused"}
EXPECTED_TTL = 3600
DRIFT_POKE = "drift"  # wakes the source watcher to compare with git, without a fetch
DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class Notices:
    """Sends a notice to every chat room or channel routed for a stack."""

    def __init__(self, config: Config, queue: WorkerQueue) -> None:
        self.config = config
        self.queue = queue
        self._keys = queue.keys

    def post(
        self,
        stack: str,
        text: str,
        detail: list[str],
        key: str,
        status: str = "info",
        *,
        job: str = "0",
        origin: dict[str, str] | None = None,
        pipe: Any = None,
    ) -> int:
        """Queue the notice for every routed room. A job's notice carries the job and where
        its command was said (``origin``), so a notice that cannot be posted is told there.
        With ``pipe``, the notice is posted when the caller executes that transaction."""
        sent = 0
        digest = hashlib.sha256(f"{key}|{text}|{detail}".encode()).hexdigest()[:16]
        for route in self.config.notice_routes:
            if not matches_any(stack, route.stacks):
                continue
            # Only to platforms a bot serves: no reader would ever empty another inbox.
            targets = []
            if "matrix" in self.config.adapters:
                targets += [{"inbox": "matrix", "room": r} for r in route.matrix]
            if "slack" in self.config.adapters:
                targets += [{"inbox": "slack", "channel": c} for c in route.slack]
            for target in targets:
                data: dict[str, Any] = {
                    "text": text,
                    "detail": detail,
                    "id": digest,
                    "status": status,
                }
                if origin and origin.get("inbox") == target["inbox"]:
                    data["origin"] = origin
                self.queue.progress(Result("notice", job, "notice", True, data, target), pipe)
                sent += 1
        if sent:
            NOTICES.inc(sent)
            log.info("notice about %s: %s", stack or "(no stack)", text)
        return sent

    # -- claims: the bot's own jobs announce themselves ---------------------------------

    def claim(self, names: list[str], job: str, seconds: float) -> None:
        with self.queue.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.set(self._claim_key(name), job, ex=int(seconds) + 1)
            pipe.execute()

    def release(
        self, names: list[str], services: list[dict[str, Any]], removed: Collection[str] = ()
    ) -> None:
        """The job is over: drop its claims, and leave the specs it produced (and the
        services it removed) as expected, so the watcher takes them in silently, however
        late it looks, but still tells any later change."""
        # One transaction, so that no watcher sees the claims gone before the specs are set.
        with self.queue.redis.pipeline(transaction=True) as pipe:
            for name in names:
                pipe.delete(self._claim_key(name))
            for service in services:
                spec = summarize(service)["spec"]
                self._mark(pipe, f"expected:{service['ID']}", spec)
                # Not consumed by the watcher: the drift check reads it too (a `!scale` of a
                # stack from git differs from git on purpose, and was told by its job).
                self._mark(pipe, f"made:{service['ID']}", spec)
            for sid in removed:
                self._mark(pipe, f"expected:{sid}", "removed")
            pipe.execute()

    def _mark(self, pipe: Any, what: str, state: str) -> None:
        """A marker that silences a notice, sealed: one written into Redis by anyone else
        (to hide a hand change) matches nothing, and the change is told."""
        key = self._keys.notice(what)
        pipe.set(key, seal(self.config.signing_secret, key, state), ex=EXPECTED_TTL)

    def _marked(self, what: str, state: str, raw: Any) -> bool:
        key = self._keys.notice(what)
        try:
            return raw is not None and unseal(self.config.signing_secret, key, raw) == state
        except Forged as exc:
            log.warning("notice marker %s refused: %s", what, exc)
            return False

    def expect(self, object_id: str, state: str) -> None:
        """A bot job is about to put this object (a node's availability) in ``state`` and
        tells it itself: the watcher, however late it looks, takes the change in silently."""
        with self.queue.redis.pipeline(transaction=False) as pipe:
            self._mark(pipe, f"expected:{object_id}", state)
            pipe.execute()

    def expected(self, object_id: str, state: str) -> bool:
        """Was this state (a service's spec, "removed", a node's availability) made by a
        bot job, which told it? Consumed once seen."""
        key = self._keys.notice(f"expected:{object_id}")
        if self._marked(f"expected:{object_id}", state, self.queue.redis.get(key)):
            self.queue.redis.delete(key)
            return True
        return False

    def made_by_bot(self, service: dict[str, Any]) -> bool:
        """Is this service's spec the one a bot job left it with (within the last hour)?"""
        made = self.queue.redis.get(self._keys.notice(f"made:{service['ID']}"))
        return self._marked(f"made:{service['ID']}", summarize(service)["spec"], made)

    def claimed(self, *names: str) -> bool:
        return bool(self.claimed_among(names))

    def claimed_among(self, names: Collection[str]) -> set[str]:
        """Which of these stacks or services a job holds now (one round trip)."""
        names = [n for n in names if n]
        if not names:
            return set()
        held = self.queue.redis.mget([self._claim_key(n) for n in names])
        return {n for n, job in zip(names, held, strict=True) if job}

    def _claim_key(self, name: str) -> str:
        return self._keys.notice(f"claim:{name}")


@dataclass
class Pending:
    """An outside change waiting for swarm's update to finish before it is told."""

    stack: str
    changes: dict[str, str]  # service name -> what changed
    started: float
    quiet_since: float
    outcome: dict[str, str] = field(default_factory=dict)  # service name -> outcome


def summarize(service: dict[str, Any]) -> dict[str, Any]:
    spec = service["Spec"]
    status = service.get("ServiceStatus") or {}
    update = service.get("UpdateStatus") or {}
    mode = spec.get("Mode") or {}
    return {
        "name": spec["Name"],
        "stack": stack_of(spec.get("Labels")),
        "spec": hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16],
        "image": image_tag(spec),
        "replicas": (mode.get("Replicated") or {}).get("Replicas"),
        "update": update.get("State", ""),
        "update_started": parse_time(update.get("StartedAt")),
        "update_message": update.get("Message", ""),
        "healthy": int(status.get("RunningTasks", 0)) >= int(status.get("DesiredTasks", 0)),
        "commit": (spec.get("Labels") or {}).get(COMMIT_LABEL, ""),
    }


def describe_change(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    if old is None:
        return f"created ({new['image']})"
    parts = []
    if old["image"] != new["image"]:
        parts.append(f"image {old['image']} -> {new['image']}")
    if old["replicas"] != new["replicas"]:
        parts.append(f"replicas {old['replicas']} -> {new['replicas']}")
    return ", ".join(parts) or "settings changed"


class Watcher:
    def __init__(
        self,
        config: Config,
        client_factory: Callable[[], docker.DockerClient],
        queue: WorkerQueue,
        notices: Notices,
        stop: threading.Event,
    ) -> None:
        self.config = config
        self.client_factory = client_factory
        self.queue = queue
        self.notices = notices
        self.stop = stop
        self.poke = threading.Event()
        self.pending: dict[str, Pending] = {}
        self._state_key = queue.keys.notice("state")
        # Changes held for their quiet period live in Redis beside the state they were
        # found against, so a watcher that dies (or is replaced) mid-wait loses none.
        self._pending_key = queue.keys.notice("pending")
        self._nodes_key = queue.keys.notice("nodes")  # node -> host, status, availability
        self._moving_key = queue.keys.notice("moving")  # down node -> services it ran
        self._lease = Lease(queue.redis, queue.keys.notice("leader"), queue.consumer)
        self.refreshes = 0

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
                self.poke.set()  # (re)connected: compare everything with what was last seen
                backoff = 1.0
                for event in stream:
                    if self.stop.is_set():
                        break
                    if event.get("Action") in ("create", "update", "remove"):
                        self.poke.set()
            except DOCKER_ERRORS as exc:
                log.warning("docker event stream lost (%s); reconnecting in %.0fs", exc, backoff)
            except Exception:  # a malformed event: reconnect rather than stop watching
                log.exception("docker event stream failed; reconnecting in %.0fs", backoff)
            self.stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)

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
            try:
                if self._lease.held():
                    self.refresh()
            except DOCKER_ERRORS as exc:
                log.warning("notice watcher: docker unavailable (%s)", exc)
            except redis.RedisError as exc:
                log.warning("notice watcher: redis unavailable (%s)", exc)
            except Exception:  # malformed state in Redis, a bug: the next look tries again
                log.exception("notice watcher: look failed")
                self.stop.wait(1.0)

    def _read_state(self) -> tuple[dict[str, str], str | None, str | None, dict[str, str]]:
        """The watcher's own keys. One that someone replaced with another type is deleted
        and read as empty (logged): the watcher's state is its own to re-derive, and a
        look that failed on it every time would never tell anything again."""
        keys = (self._state_key, self._pending_key, self._nodes_key, self._moving_key)
        with self.queue.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._state_key)
            pipe.get(self._pending_key)
            pipe.get(self._nodes_key)
            pipe.hgetall(self._moving_key)
            replies = pipe.execute(raise_on_error=False)
        broken = [k for k, r in zip(keys, replies, strict=True) if isinstance(r, Exception)]
        if broken:
            log.warning("notice watcher: %s of another type; starting over", ", ".join(broken))
            self.queue.redis.delete(*broken)
            return {}, None, None, {}
        state, pending_text, nodes_seen, moving = replies
        return state, pending_text, nodes_seen, moving

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
                isinstance(v, dict) and "spec" in v and "healthy" in v for v in seen.values()
            ):
                raise ValueError("a service's state is not an object with spec and health")
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("notice watcher: its state in Redis is malformed (%s); starting over", exc)
            return {}, {}
        return seen, pending

    def resign(self) -> None:
        """This worker is stopping: give up the lease so another worker watches at once."""
        self._lease.give_up()

    # -- comparing state ------------------------------------------------------------------------

    def refresh(self) -> None:
        client = self.client_factory()
        services = client.api.services(status=True)
        self.refreshes += 1
        now = time.time()
        state, pending_text, nodes_seen, moving = self._read_state()
        seen, self.pending = self._remembered(state, pending_text)
        first_look = not seen
        drifted = False  # a stack from git changed: the source watcher is woken to tell it
        current = {s["ID"]: summarize(s) for s in services}
        for sid, cur in current.items():
            old = seen.get(sid)
            if not cur["healthy"] and (old is None or old["healthy"]) and not first_look:
                # Short of replicas: failing, or only being scheduled? Stored as healthy
                # while its tasks are on their way, so a later failure is still told.
                cur["failing"] = self._failing(client, sid, now)
                cur["healthy"] = not cur["failing"]
            claimed = self.notices.claimed(cur["stack"], cur["name"])
            if first_look or claimed:
                continue  # the first look only learns; a bot job tells its own story
            if (old is None or old["spec"] != cur["spec"]) and not self.notices.expected(
                sid, cur["spec"]
            ):
                if old is not None and cur.get("commit") and self.config.git is not None:
                    # Deployed from git: the source watcher tells it, once, as drift from
                    # the commit (with the diff and how to undo it); one notice, not two.
                    drifted = True
                else:
                    self._note_change(cur, describe_change(old, cur), now)
            if cur["update"] != (old or {}).get("update") and cur["update"] in FAILING:
                reason = cur["update_message"] or "no reason given"
                outcome = f"{cur['update'].replace('_', ' ')}: {reason}"
                pending = self.pending.get(cur["stack"] or cur["name"])
                if pending is not None and cur["name"] in pending.changes:
                    pending.outcome[cur["name"]] = outcome  # told with the change itself
                else:
                    key = f"fail-{sid}-{cur['update_started']}"
                    self._post(cur["stack"], f"{cur['name']}: swarm {outcome}", [], key, "failed")
            if (
                old is not None
                and old["healthy"]
                and not cur["healthy"]
                and cur["update"] not in ("updating",)
            ):
                self._post(
                    cur["stack"],
                    f"{cur['name']} is unhealthy: {cur.get('failing') or 'tasks are not running'}",
                    [],
                    f"sick-{sid}-{int(now)}",
                    "failed",
                )
        for sid, old in seen.items():
            if (
                sid not in current
                and not first_look
                and not self.notices.claimed(old["stack"], old["name"])
                and not self.notices.expected(sid, "removed")
            ):
                self._post(
                    old["stack"], f"{old['name']} was removed outside the bot", [], f"rm-{sid}"
                )
        self._finish_pending(current, now)
        nodes = self._look_at_nodes(client, _json_object(nodes_seen), moving)
        self._tell_moves(client, current, nodes, moving)
        with self.queue.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._state_key, self._pending_key, self._moving_key)
            pipe.set(self._nodes_key, json.dumps(nodes))
            if moving:
                pipe.hset(self._moving_key, mapping=dict[Any, Any](moving))
            if current:
                pipe.hset(self._state_key, mapping={k: json.dumps(v) for k, v in current.items()})
            if self.pending:
                held = {k: asdict(p) for k, p in self.pending.items()}
                pipe.set(self._pending_key, json.dumps(held))
            if drifted:
                pipe.rpush(self.queue.keys.watch("pokes"), DRIFT_POKE)
            # For operators and tests; a counter overwritten by someone is set aside.
            pipe.eval(NEXT_ID, 1, self.queue.keys.notice("refreshes"))
            pipe.execute()

    def _look_at_nodes(
        self,
        client: docker.DockerClient,
        seen: dict[str, dict[str, str]] | None,
        moving: dict[str, str],
    ) -> dict[str, dict[str, str]]:
        """Nodes that went down or came back, joined or left, and availability changed by
        hand (a bot job expects its own change and tells it): one notice per change,
        compared with the state kept in Redis, so a new watcher neither repeats nor misses
        one. Returns the nodes as they are now; a node gone down is added to ``moving``."""
        now = {
            n["ID"]: {
                "host": hostname(n),
                "status": (n.get("Status") or {}).get("State", "unknown"),
                "availability": (n.get("Spec") or {}).get("Availability", "active"),
            }
            for n in client.api.nodes()
        }
        if seen is None:
            return now  # the first look only learns
        for node_id, cur in now.items():
            old, host = seen.get(node_id), cur["host"]
            stamp = f"{node_id}-{int(time.time())}"
            if old is None:
                text = f"node {host} joined the swarm ({cur['status']})"
                self._post("", text, [], f"node-join-{node_id}")
                continue
            if old["status"] != cur["status"] and cur["status"] == "down":
                text = f"node {host} is down: swarm moves its tasks to other nodes"
                self._post("", text, [], f"node-down-{stamp}", "failed")
                ran = self._ran_on(client, node_id)
                if ran:
                    moving[node_id] = json.dumps({"host": host, "services": ran})
            elif old["status"] != cur["status"] and cur["status"] == "ready":
                self._post("", f"node {host} is back (ready)", [], f"node-up-{stamp}")
            changed = old["availability"] != cur["availability"]
            if changed and not self.notices.expected(node_id, cur["availability"]):
                verb = {"drain": "drained", "pause": "paused", "active": "activated"}.get(
                    cur["availability"], cur["availability"]
                )
                self._post("", f"node {host} {verb} outside the bot", [], f"node-av-{stamp}")
        for node_id, old in seen.items():
            if node_id not in now:
                self._post("", f"node {old['host']} left the swarm", [], f"node-left-{node_id}")
        return now

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
        services: dict[str, dict[str, Any]],
        nodes: dict[str, dict[str, str]],
        moving: dict[str, str],
    ) -> None:
        """Once every service a down node ran is whole again (or the node is back), one
        notice says where their tasks run now; the node leaves ``moving``."""
        for node_id, raw in list(moving.items()):
            record = _json_object(raw)
            if record is None or not isinstance(record.get("services"), list):
                log.warning(
                    "notice watcher: a malformed move record for node %s; dropped", node_id
                )
                self.queue.redis.hdel(self._moving_key, node_id)
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
            lines = []
            for sid, tasks in placed.items():
                where = sorted(
                    {nodes.get(t.get("NodeID", ""), {}).get("host", "?") for t in tasks}
                )
                lines.append(f"{services[sid]['name']}: {', '.join(where) or 'nowhere yet'}")
            text = f"tasks of node {record['host']} placed again" + (
                " (the node is back)" if back else ""
            )
            self._post("", text, lines, f"node-moved-{node_id}-{int(time.time())}")
            del moving[node_id]

    def _note_change(self, cur: dict[str, Any], change: str, now: float) -> None:
        key = cur["stack"] or cur["name"]
        pending = self.pending.setdefault(key, Pending(cur["stack"], {}, now, now))
        pending.changes[cur["name"]] = change
        pending.quiet_since = now

    def _finish_pending(self, current: dict[str, dict[str, Any]], now: float) -> None:
        """Tell the outside changes whose updates have finished (or never started)."""
        by_name = {c["name"]: c for c in current.values()}
        for key, pending in list(self.pending.items()):
            states = [by_name.get(name) for name in pending.changes]
            if any(s and s["update"] in ("updating", "rollback_started") for s in states):
                continue
            if now - pending.quiet_since < self.config.notice_quiet_seconds:
                continue
            del self.pending[key]
            lines, failed = [], False
            for name, change in pending.changes.items():
                state = by_name.get(name)
                outcome = pending.outcome.get(name)
                ours = state is not None and state["update_started"] >= pending.started - 1
                if outcome is None and state is not None and ours and state["update"] in FAILING:
                    outcome = f"{state['update'].replace('_', ' ')}: {state['update_message']}"
                failed = failed or outcome is not None
                lines.append(f"{name}: {change} ({outcome or 'done'})")
            count = len(pending.changes)
            head = f"{key}: changed outside the bot ({count} service{'s' * (count > 1)}, "
            head += f"{now - pending.started:.0f}s)" + (": FAILED" if failed else "")
            status = "failed" if failed else "info"
            self._post(pending.stack, head, lines, f"out-{key}-{pending.started}", status)

    def _failing(self, client: docker.DockerClient, sid: str, now: float) -> str:
        """Why a service short of its replicas is failing, or "" when its missing tasks
        are merely on their way (assigned, preparing, starting) with no recent failure."""
        task = failing_task(client.api.tasks(filters={"service": sid}), now)
        return describe_task(task) if task is not None else ""

    def _post(
        self, stack: str, text: str, detail: list[str], key: str, status: str = "info"
    ) -> None:
        self.notices.post(stack, text, detail, key, status)


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
