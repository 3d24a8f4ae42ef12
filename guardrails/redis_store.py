"""Rate-monitor windows, check schedule and alert boards in Redis, shared by a whole fleet.

Every worker of every replica records into, checks on and alerts from the same state
(``window_scope: fleet``). Semantics are those of the in-process stores, call for call
(:mod:`fairgate.guardrails.store`; property tests compare them on random sequences).

**One round trip per batch.** ``record`` sends one ``EVALSHA`` per monitor in one
pipeline: on a single Redis that is one network round trip for the whole batch. Each
script is atomic for its monitor (its windows, its outcome counter and its board change
together); monitors are independent, so the batch is not one transaction across them.
A batch that makes a check due costs two more round trips (the windows of every group,
then ``publish``), once per ``size / checks_per_window`` outcomes of the fleet.

**Key layout.** Everything of one monitor under one policy version shares a hash tag::

    {<prefix>:<policy version>:<monitor>}:ctl                 hash: n, slot, epoch, raised, active, last
    {<prefix>:<policy version>:<monitor>}:<shape>:w:<group>   list (count windows) or hash ring (time windows)
    {<prefix>:<policy version>:<monitor>}:<shape>:p:<group>   positives of a count window
    {<prefix>:<policy version>:<monitor>}:seq:<setup>         e-detector state per pair (sequential)
    {<prefix>:<policy version>:<monitor>}:seq:<setup>:alarm   its alarms not yet acted on

``<shape>`` is :attr:`WindowSpec.tag` (``c2000``, ``t3600x60``), so a policy that changes a
window never reads the old shape's keys. The version is percent-encoded (no braces can
leak into the tag). A Redis Cluster places each monitor's keys on one node (shard by
monitor). Keys carry a TTL (``key_ttl_s``, at least twice a time window), set when a key
is created and renewed at every check: the keys of a monitor that still gets traffic
never expire, those of a retired policy version, monitor or group do.

**Sequential monitors.** A batch of a ``rates.method: sequential`` monitor also updates
the monitor's e-detectors in the same script call (no extra round trip, atomic with the
windows): one detector per compared pair for the whole fleet, with the constants of
:meth:`SequentialDetector.wire` and its arithmetic (:mod:`fairgate.guardrails._redis_scripts`).
An alarm is kept in the alarm hash until a published check acts on it, so whichever
worker runs the next check raises the alert, and every worker's next batch sees it
(``urgent`` in the reply makes a check run at once). ``<setup>`` is
:attr:`SequentialSetup.tag`: a policy that changes the compared groups or the test starts
new keys.

**Failures.** Each round trip has a socket timeout (50 ms by default) and no client-side
retries; errors surface as :class:`StoreTimeout`, :class:`StoreUnavailable` or
:class:`StoreResponseError`. Falling back, backing off and counting errors is the job
of :class:`~fairgate.guardrails.failover.FailoverStore`, not of this class.
"""

from __future__ import annotations

import hashlib
import logging
import math
import struct
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fairgate.guardrails import _redis_scripts
from fairgate.guardrails.sequential import Alarm, SequentialDetector, SequentialSetup, batch_counts
from fairgate.guardrails.store import (
    AlertBoard,
    BoardUpdate,
    MonitorBatch,
    MonitorQuery,
    MonitorReply,
    Scope,
    StoreError,
    StoreReply,
    StoreResponseError,
    StoreTimeout,
    StoreUnavailable,
    WindowCounts,
    WindowSpec,
    split_key,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 0.05
DEFAULT_KEY_TTL_S = 7 * 24 * 3600.0
DEFAULT_PREFIX = "fairgate"
_SCRIPTS = {"record": _redis_scripts.RECORD, "counts": _redis_scripts.COUNTS, "publish": _redis_scripts.PUBLISH}
_SHAS = {name: hashlib.sha1(text.encode("utf-8")).hexdigest() for name, text in _SCRIPTS.items()}


class RedisURLError(ValueError):
    """A Redis URL that cannot be used; the message names the value and the accepted forms."""


def check_redis_url(url: str) -> str:
    """``url`` if it is a usable Redis URL, else :class:`RedisURLError` (password masked)."""
    parsed = urllib.parse.urlsplit(url.strip())
    shown = mask_url(url)
    forms = "use redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH/TO/redis.sock"
    if parsed.scheme not in ("redis", "rediss", "unix"):
        raise RedisURLError(f"{shown!r} is not a Redis URL (scheme {parsed.scheme or 'missing'!r}); {forms}")
    if parsed.scheme == "unix":
        if not parsed.path:
            raise RedisURLError(f"{shown!r} names no socket path; {forms}")
        return url.strip()
    if not parsed.hostname:
        raise RedisURLError(f"{shown!r} names no host; {forms}")
    try:
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise RedisURLError(f"{shown!r} has a bad port; {forms}") from None
    db = parsed.path.strip("/")
    if db and not db.isdigit():
        raise RedisURLError(f"{shown!r}: database {db!r} is not a number; {forms}")
    return url.strip()


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and error messages)."""
    parsed = urllib.parse.urlsplit(url.strip())
    userinfo, at, host = parsed.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url.strip()
    user = userinfo.split(":", 1)[0]
    return urllib.parse.urlunsplit(parsed._replace(netloc=f"{user}:***@{host}"))


@dataclass(frozen=True, slots=True)
class MonitorKeys:
    """The Redis keys of one monitor under one policy version (module docstring)."""

    tag: str

    @property
    def control(self) -> str:
        return f"{self.tag}:ctl"

    def window(self, spec: WindowSpec, group: str) -> str:
        return f"{self.tag}:{spec.tag}:w:{group}"

    def positives(self, spec: WindowSpec, group: str) -> str:
        return f"{self.tag}:{spec.tag}:p:{group}"

    def sequential(self, setup: SequentialSetup) -> str:
        return f"{self.tag}:seq:{setup.tag}"

    def alarms(self, setup: SequentialSetup) -> str:
        return f"{self.tag}:seq:{setup.tag}:alarm"


class RedisWindowStore:
    """A :class:`~fairgate.guardrails.store.MonitorStore` in Redis (module docstring).

    ``client`` is a ``redis.Redis`` (or anything with ``pipeline(transaction=False)``,
    ``script_load`` and ``scan_iter``); build one with :meth:`from_url` to get the timeout
    and no-retry settings this store relies on.
    """

    def __init__(
        self,
        *,
        client: Any,
        policy_version: str,
        prefix: str = DEFAULT_PREFIX,
        key_ttl_s: float = DEFAULT_KEY_TTL_S,
    ) -> None:
        if not prefix or any(ch in prefix for ch in "{}*?[] "):
            raise ValueError(f"Redis key prefix {prefix!r} must be non-empty without braces, glob characters or spaces")
        if not key_ttl_s > 0:
            raise ValueError(f"key_ttl_s {key_ttl_s} must be > 0")
        self._client = client
        self._namespace = f"{prefix}:{urllib.parse.quote(policy_version, safe='')}"
        self._key_ttl_ms = max(1, int(key_ttl_s * 1000))
        self._key_cache: dict[tuple[str, WindowSpec, str], tuple[str, str]] = {}
        # Per detector setup (bounded by the policies served): a detector to read evidence
        # with, and the constant part of the script's detector block.
        self._detectors: dict[SequentialSetup, tuple[SequentialDetector, list[str]]] = {}
        self._scratch = threading.Lock()  # one reply at a time loads the shared scratch detector

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        policy_version: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        prefix: str = DEFAULT_PREFIX,
        key_ttl_s: float = DEFAULT_KEY_TTL_S,
    ) -> RedisWindowStore:
        """A store on a new ``redis.Redis`` client: ``timeout_s`` per round trip, no retries.

        Connecting is lazy: a Redis that is down at start makes the first batches fail
        over, it does not stop the process.
        """
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(
            check_redis_url(url),
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            decode_responses=False,
        )
        return cls(client=client, policy_version=policy_version, prefix=prefix, key_ttl_s=key_ttl_s)

    @property
    def scope(self) -> Scope:
        return "fleet"

    @property
    def namespace(self) -> str:
        return self._namespace

    def keys(self, monitor: str) -> MonitorKeys:
        return MonitorKeys(tag="{" + f"{self._namespace}:{monitor}" + "}")

    # -- MonitorStore -------------------------------------------------------------------

    def record(self, batches: Sequence[MonitorBatch], *, now: float) -> StoreReply:
        """One round trip for the batch; one more, for the counts, when it made checks due."""
        raws = self._run([self._record_call(b, b.events, b.observed, b.schedule.every_n, b.schedule.slot(now), now)
                          for b in batches])
        due = [b for b, raw in zip(batches, raws, strict=True) if int(raw[0])]
        counted = dict(zip((b.monitor for b in due), self._run([self._counts_call(b, now, refresh=True) for b in due]),
                           strict=True))
        replies = {}
        for batch, raw in zip(batches, raws, strict=True):
            urgent = bool(int(raw[5]))
            if batch.monitor in counted:  # the board as read with the counts: the later one
                replies[batch.monitor] = self._counts_reply(batch, counted[batch.monitor], due=True, urgent=urgent)
            else:
                _, epoch, raised, active, last = raw[:5]
                replies[batch.monitor] = MonitorReply(board=_board(epoch, raised, active, last), urgent=urgent)
        return StoreReply(monitors=replies)

    def snapshot(self, queries: Sequence[MonitorQuery], *, now: float) -> StoreReply:
        raws = self._run([self._counts_call(q, now, refresh=False) for q in queries])
        return StoreReply(
            monitors={q.monitor: self._counts_reply(q, raw, due=False) for q, raw in zip(queries, raws, strict=True)}
        )

    def publish(self, updates: Sequence[BoardUpdate]) -> StoreReply:
        """Write check results with compare-and-set; an accepted one also deletes the pending
        alarms it consumed (same script call, so no other check can act on them again)."""
        calls = []
        for u in updates:
            keys = [self.keys(u.monitor).control]
            consumed: list[str] = []
            if u.consumed and u.sequential is not None:
                keys.append(self.keys(u.monitor).alarms(u.sequential))
                consumed = sorted(u.consumed)
            args = [str(u.expected_epoch), ",".join(sorted(u.active)), str(u.newly_raised), u.last,
                    str(self._key_ttl_ms), *consumed]
            calls.append(("publish", keys, args))
        results = self._run(calls)
        replies = {}
        for update, raw in zip(updates, results, strict=True):
            accepted, epoch, raised, active, last = raw
            replies[update.monitor] = MonitorReply(
                board=_board(epoch, raised, active, last), accepted=bool(int(accepted))
            )
        return StoreReply(monitors=replies)

    # -- WindowStore (keys are ``monitor/group``) ----------------------------------------

    def add(self, events: Mapping[str, Sequence[int]], *, now: float, spec: WindowSpec) -> None:
        by_monitor: dict[str, dict[str, Sequence[int]]] = {}
        for key, values in events.items():
            monitor, group = split_key(key)
            by_monitor.setdefault(monitor, {})[group] = values
        self._run(
            [
                self._record_call(MonitorQuery(monitor=m, groups=tuple(groups), spec=spec), groups, 0, None, None, now)
                for m, groups in by_monitor.items()
            ]
        )

    def counts(self, keys: Sequence[str], *, now: float, spec: WindowSpec) -> dict[str, WindowCounts]:
        by_monitor: dict[str, list[tuple[str, str]]] = {}
        for key in keys:
            monitor, group = split_key(key)
            by_monitor.setdefault(monitor, []).append((key, group))
        queries = [
            MonitorQuery(monitor=m, groups=tuple(g for _, g in pairs), spec=spec) for m, pairs in by_monitor.items()
        ]
        raws = self._run([self._counts_call(q, now, refresh=False) for q in queries])
        found: dict[str, WindowCounts] = {}
        for query, raw in zip(queries, raws, strict=True):
            counts = self._counts_reply(query, raw, due=False).counts or {}
            for key, group in by_monitor[query.monitor]:
                found[key] = counts[group]
        return {key: found[key] for key in keys}

    def reset_evidence(self, monitor: str, setup: SequentialSetup, groups: Sequence[str] | None = None) -> None:
        """Forget the detector state of the pairs involving ``groups`` (all when None) and their
        pending alarms, for every worker and replica (one MULTI: both hashes change together)."""
        keys = self.keys(monitor)
        state, alarms = keys.sequential(setup), keys.alarms(setup)
        try:
            pipe = self._client.pipeline(transaction=True)
            if groups is None:
                pipe.delete(state, alarms)
            else:
                detector, _ = self._detector(setup)
                chosen = {detector.groups.index(g) for g in groups if g in detector.groups}
                fields = [f"{a},{b}" for a, b in detector.pair_indices if a in chosen or b in chosen]
                if fields:
                    pipe.hdel(state, *fields)
                if groups:
                    pipe.hdel(alarms, *groups)
            pipe.execute()
        except Exception as error:
            raise _translate(error) from error

    def forget(self, keys: Sequence[str], *, spec: WindowSpec) -> None:
        """Delete the window keys of ``keys`` (``monitor/group``) for every worker and replica."""
        doomed = []
        for key in keys:
            monitor, group = split_key(key)
            tags = self.keys(monitor)
            doomed += [tags.window(spec, group), tags.positives(spec, group)]
        if not doomed:
            return
        try:
            self._client.delete(*doomed)
        except Exception as error:
            raise _translate(error) from error

    def clear(self) -> None:
        """Delete every key of this prefix and policy version (tests; a policy's retirement)."""
        try:
            batch = []
            for key in self._client.scan_iter(match="{" + self._namespace + ":*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    self._client.delete(*batch)
                    batch = []
            if batch:
                self._client.delete(*batch)
        except Exception as error:
            raise _translate(error) from error

    def ping(self) -> None:
        """One round trip; raises a :class:`StoreError` when Redis cannot be used."""
        try:
            self._client.ping()
        except Exception as error:
            raise _translate(error) from error

    # -- internals ----------------------------------------------------------------------

    def _ttl_ms(self, spec: WindowSpec) -> int:
        if spec.seconds is None:
            return self._key_ttl_ms
        return max(self._key_ttl_ms, math.ceil(spec.seconds * 2000))

    def _group_keys(self, monitor: str, spec: WindowSpec, groups: Sequence[str]) -> list[str]:
        """The control hash, then (window, positives) of each group; cached, the set is bounded."""
        found: list[str] = []
        for group in groups:
            pair = self._key_cache.get((monitor, spec, group))
            if pair is None:
                keys = self.keys(monitor)
                pair = self._key_cache[(monitor, spec, group)] = (keys.window(spec, group), keys.positives(spec, group))
            found += pair
        return [self.keys(monitor).control, *found]

    def _window_args(self, spec: WindowSpec, now: float) -> list[str]:
        return [
            "c" if spec.size is not None else "t",
            str(spec.size or 0),
            "1" if spec.timed else "0",
            str(spec.oldest_bucket(now)),
        ]

    def _record_call(
        self,
        query: MonitorQuery,
        events: Mapping[str, Sequence[int]],
        observed: int,
        every_n: int | None,
        slot: int | None,
        now: float,
    ) -> tuple[str, list[str], list[str]]:
        """The RECORD script for one monitor: only the groups with outcomes in this batch."""
        spec = query.spec
        groups = [g for g, values in events.items() if values]
        bucket = spec.bucket(now)
        args = [
            *self._window_args(spec, now),
            str(bucket % spec.buckets),
            str(bucket),
            str(bucket * 2),
            str(bucket * 2 + 1),
            str(every_n or 0),
            "" if slot is None else str(slot),
            str(observed),
            str(self._ttl_ms(spec)),
            str(query.known_epoch),
            str(len(groups)),
        ]
        args += ["".join("1" if v else "0" for v in events[g]) for g in groups]
        keys = self._group_keys(query.monitor, spec, groups)
        if query.sequential is not None:
            keys += self._sequential_keys(query.monitor, query.sequential)
            args += self._sequential_args(query.sequential, events)
        return "record", keys, args

    def _counts_call(self, query: MonitorQuery, now: float, *, refresh: bool) -> tuple[str, list[str], list[str]]:
        """The COUNTS script for every group of one monitor (refresh: also renew the TTLs)."""
        spec = query.spec
        args = [*self._window_args(spec, now), str(self._ttl_ms(spec) if refresh else 0), str(query.known_epoch),
                str(len(query.groups))]
        keys = self._group_keys(query.monitor, spec, query.groups)
        if query.sequential is not None:
            keys += self._sequential_keys(query.monitor, query.sequential)
        return "counts", keys, args

    def _counts_reply(
        self, query: MonitorQuery, raw: Sequence[Any], *, due: bool, urgent: bool = False
    ) -> MonitorReply:
        epoch, raised, active, last, flat = raw[:5]
        counts = {
            group: WindowCounts(int(flat[2 * i]), int(flat[2 * i + 1])) for i, group in enumerate(query.groups)
        }
        board = _board(epoch, raised, active, last)
        if query.sequential is None or len(raw) < 7:
            return MonitorReply(board=board, due=due, counts=counts, urgent=urgent)
        detector, _ = self._detector(query.sequential)
        with self._scratch:  # a scratch copy: only its evidence leaves
            _load(detector, raw[5])
            evidence = detector.evidence()
        return MonitorReply(
            board=board, due=due, counts=counts, urgent=urgent, evidence=evidence, alarms=_alarms(raw[6])
        )

    # -- sequential detectors -----------------------------------------------------------

    def _detector(self, setup: SequentialSetup) -> tuple[SequentialDetector, list[str]]:
        found = self._detectors.get(setup)
        if found is None:
            detector = setup.detector()
            wire = detector.wire()
            block = [
                str(len(wire.groups)),
                str(-1 if wire.reference is None else wire.reference),
                str(len(wire.columns)),
                str(len(wire.fractions)),
                repr(wire.threshold),
                repr(wire.head_start),
                str(wire.start_every),
                repr(wire.max_fraction),
                *map(repr, wire.fractions),
                *map(repr, wire.weights),
            ]
            for coef_a, coef_b, coef_0, worst, direction, test in wire.columns:
                block += [repr(coef_a), repr(coef_b), repr(coef_0), repr(worst), str(direction), test]
            block += list(wire.groups)
            found = self._detectors[setup] = (detector, block)
        return found

    def _sequential_keys(self, monitor: str, setup: SequentialSetup) -> list[str]:
        keys = self.keys(monitor)
        return [keys.sequential(setup), keys.alarms(setup)]

    def _sequential_args(self, setup: SequentialSetup, events: Mapping[str, Sequence[int]]) -> list[str]:
        """The detector block of RECORD: the setup's constants, then this batch's counts by group index."""
        detector, block = self._detector(setup)
        index = {g: i for i, g in enumerate(detector.groups)}
        rows = [(index[g], n, x) for g, (n, x) in batch_counts(events).items() if g in index]
        args = [*block, str(len(rows))]
        for i, n, x in rows:
            args += [str(i), str(n), str(x)]
        return args

    def read_detector(self, monitor: str, setup: SequentialSetup) -> SequentialDetector:
        """The fleet's detector of ``monitor`` as it is in Redis now (one round trip; tests, tools)."""
        try:
            flat = self._client.execute_command("HGETALL", self.keys(monitor).sequential(setup))
        except Exception as error:
            raise _translate(error) from error
        if isinstance(flat, dict):  # a client that parses HGETALL into a dict
            flat = [item for pair in flat.items() for item in pair]
        detector = setup.detector()
        _load(detector, flat)
        return detector

    def _run(self, calls: Sequence[tuple[str, list[str], list[str]]]) -> list[Any]:
        """Run ``calls`` in one pipeline (one round trip); reload scripts once if Redis lost them."""
        if not calls:
            return []
        try:
            results = self._pipeline(calls)
            missing = [i for i, r in enumerate(results) if _is_noscript(r)]
            if missing:
                # A restarted or flushed Redis: the scripts that failed did not run, so
                # loading them and running just those again applies each batch once.
                for name, text in _SCRIPTS.items():
                    self._client.script_load(text)
                    logger.info("loaded Lua script %s into Redis", name)
                again = self._pipeline([calls[i] for i in missing])
                for i, result in zip(missing, again, strict=True):
                    results[i] = result
        except StoreError:
            raise
        except Exception as error:
            raise _translate(error) from error
        for result in results:
            if isinstance(result, Exception):
                raise _translate(result) from result
        return results

    def _pipeline(self, calls: Sequence[tuple[str, list[str], list[str]]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for name, keys, args in calls:
            pipe.execute_command("EVALSHA", _SHAS[name], len(keys), *keys, *args)
        return list(pipe.execute(raise_on_error=False))


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _board(epoch: Any, raised: Any, active: Any, last: Any) -> AlertBoard:
    names = _text(active)
    return AlertBoard(
        active=frozenset(n for n in names.split(",") if n),
        raised=int(_text(raised)),
        epoch=int(_text(epoch)),
        last=None if last is None else _text(last),
    )


def _load(detector: SequentialDetector, flat: Sequence[Any]) -> None:
    """Put a seq hash, read as a flat field/value list ("a,b" -> packed doubles), into ``detector``."""
    unpack = struct.Struct(f"<{detector.state_width}d").unpack
    rows = {}
    for i in range(0, len(flat), 2):
        a, b = _text(flat[i]).split(",")
        rows[(int(a), int(b))] = unpack(flat[i + 1])
    detector.set_state(rows)


def _alarms(flat: Sequence[Any]) -> dict[str, Alarm]:
    """The alarm hash (flat field/value list): group -> "evidence|other|test"."""
    found = {}
    for i in range(0, len(flat), 2):
        group = _text(flat[i])
        evidence, rest = _text(flat[i + 1]).split("|", 1)
        other, test = rest.rsplit("|", 1)
        found[group] = Alarm(group=group, other=other, test=test, evidence=float(evidence))
    return found


def _is_noscript(result: Any) -> bool:
    """Redis lost the script (restart, ``SCRIPT FLUSH``): redis-py's NoScriptError, or a fake's."""
    return isinstance(result, Exception) and (
        type(result).__name__ == "NoScriptError" or str(result).startswith("NOSCRIPT")
    )


def _translate(error: BaseException) -> StoreError:
    """A redis-py (or socket) error as one of our three kinds, with the fix in the message."""
    timeouts: tuple[type[BaseException], ...] = (TimeoutError,)
    unreachable: tuple[type[BaseException], ...] = (ConnectionError, OSError)
    try:
        from redis import exceptions as redis_errors
    except ImportError:  # pragma: no cover - redis is a dependency of the distribution
        pass
    else:
        timeouts += (redis_errors.TimeoutError,)
        unreachable += (redis_errors.ConnectionError,)
    if isinstance(error, StoreError):
        return error
    if isinstance(error, timeouts):
        return StoreTimeout(
            f"Redis did not answer in time ({error}); check its latency, or raise FAIRGATE_REDIS_TIMEOUT_MS"
        )
    if isinstance(error, unreachable):
        return StoreUnavailable(f"Redis cannot be reached ({error}); check FAIRGATE_REDIS_URL and that Redis runs")
    return StoreResponseError(f"Redis answered with an error ({type(error).__name__}: {error})")
