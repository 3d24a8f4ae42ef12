"""The audit trail: every flag and block decision, appended durably before the client hears it.

A guardrail that loses the record of what it blocked cannot be audited, so the service
writes a batch's flag/block records in **one transaction** and only then returns the
batch's answers (:meth:`AuditTrail.record` runs inside the batch, before BentoML sends the
responses). If the write fails, the batch fails with a 503: an answered decision is
always a stored one.

The store sits behind the small :class:`AuditStore` protocol (append a batch, iterate a
time range, close). :class:`SQLiteAuditStore` is the embedded default; a PostgreSQL store
later implements the same three methods over the same :class:`AuditRecord` (one JSON
document per row plus the indexed columns), see ``docs/reliability.md``.

SQLite settings, and why:

- ``journal_mode=WAL``: readers (``fairgate audit export``) never block the writer, and
  several BentoML workers can append to one file (one writer at a time, ``busy_timeout``).
- ``synchronous=FULL`` (default; ``FAIRGATE_AUDIT_SYNCHRONOUS=NORMAL`` to relax): in WAL
  mode NORMAL already survives a killed process (the commit is in the WAL file), but not a
  power cut or kernel crash, which can lose the last commits. These are compliance
  records and there is one commit per *batch*, not per request, so the fsync is paid once
  per batch (measured in ``docs/reliability.md``).

Privacy: the record holds a SHA-256 of the text, never the text (nor the words of an
explanation, only their offsets and contributions), unless the operator opts
in (``FAIRGATE_AUDIT_STORE_TEXT=true`` or the policy's ``audit.store_text``). Where the
trail goes is :class:`fairgate.service.settings.AuditSettings`.

Operator actions (a policy change, emptied windows) are kept beside the decisions, in their
own table (:class:`AdminEvent`): who (the ops key's id, or ``anonymous``), when, and what
changed, so "which policy decided this, and who put it there" has an answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AdminEvent",
    "AuditError",
    "AuditRecord",
    "AuditStore",
    "AuditTrail",
    "SQLiteAuditStore",
    "default_audit_path",
    "export_jsonl",
    "open_audit_store",
    "parse_time",
    "text_digest",
]

logger = logging.getLogger(__name__)

AUDITED_ACTIONS = frozenset({"flag", "block"})


class AuditError(RuntimeError):
    """The audit store cannot be opened or written; the message names the path and the fix."""


class AuditRecord(BaseModel):
    """One flagged or blocked decision, as stored and as exported (one JSONL line)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str
    time: datetime = Field(description="when the decision was made, UTC")
    policy_version: str
    models: dict[str, str] = Field(description="role -> model tag (classifier, guard)")
    action: Literal["flag", "block"]
    reasons: list[dict[str, Any]] = Field(description="the decision's reasons, as in the response")
    label: str | None = Field(description="the classifier's label; null when blocked")
    scores: dict[str, float] = Field(default_factory=dict, description="probability per label")
    toxicity: dict[str, float] = Field(default_factory=dict, description="toxicity score per category")
    group: str | None = Field(default=None, description="the group the client sent")
    groups: list[str] = Field(default_factory=list, description="the groups the item was counted under")
    text_sha256: str = Field(description="SHA-256 of the UTF-8 text, hex")
    text_chars: int = Field(description="length of the text in characters")
    text: str | None = Field(default=None, description="the raw text, only when the operator opts in")
    explanation: dict[str, Any] | None = Field(
        default=None,
        description="the response's explanation when the item asked for one: offsets and contributions; "
        "each word's text only when the raw text is stored",
    )


class AdminEvent(BaseModel):
    """One operator action on a worker: a policy change or emptied windows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time: datetime = Field(description="when the action took effect, UTC")
    kind: Literal["policy_change", "windows_reset"]
    who: str = Field(description="the ops key's id (key-<first 8 hex of its SHA-256>), 'anonymous' or 'SIGHUP'")
    old_version: str | None = Field(default=None, description="policy version before a change")
    new_version: str | None = Field(default=None, description="policy version after a change")
    worker_pid: int = Field(description="the worker process that acted (each worker holds its own policy)")
    detail: dict[str, Any] = Field(default_factory=dict, description="monitors kept/reset, windows emptied, source")


def text_digest(text: str) -> str:
    """SHA-256 of the text's UTF-8 bytes: lets an auditor match a text without storing it."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class AuditStore(Protocol):
    """Where audit records go. ``append`` is durable when it returns, all or nothing."""

    def append(self, records: Sequence[AuditRecord]) -> None: ...

    def iter_records(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[AuditRecord]: ...

    def page(
        self, *, limit: int, before_id: int | None = None, action: str | None = None
    ) -> list[tuple[int, AuditRecord]]:
        """At most ``limit`` (id, record) pairs with id < ``before_id``, newest first."""
        ...

    def append_event(self, event: AdminEvent) -> None: ...

    def events(self, *, limit: int, before_id: int | None = None) -> list[tuple[int, AdminEvent]]: ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_decisions (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    ts REAL NOT NULL,
    action TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_decisions_ts ON audit_decisions (ts);
CREATE TABLE IF NOT EXISTS audit_events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    event TEXT NOT NULL
);
"""


class SQLiteAuditStore:
    """The embedded audit store: one SQLite file in WAL mode, one transaction per batch.

    Safe to share between threads (one connection behind a lock) and between processes
    (SQLite's file locking; a writer waits up to ``busy_timeout_s`` for another).
    """

    def __init__(
        self,
        *,
        path: str | Path,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout_s: float = 10.0,
        readonly: bool = False,
    ) -> None:
        self.path = Path(path).expanduser()
        self.synchronous = synchronous
        self._lock = threading.Lock()
        try:
            if readonly:
                if not self.path.is_file():
                    raise AuditError(
                        f"audit database {self.path} does not exist; pass --db PATH or set FAIRGATE_AUDIT_DB "
                        "to the file the service writes"
                    )
                uri = f"file:{self.path}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(
                    self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
                )
                _retry_while_locked(self._prepare, timeout_s=busy_timeout_s)
        except sqlite3.Error as error:
            raise AuditError(
                f"cannot open audit database {self.path}: {error}; set FAIRGATE_AUDIT_DB to a writable path"
            ) from None

    def _prepare(self) -> None:
        """WAL mode, durability and the schema: idempotent, so a retry may run it again."""
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise AuditError(
                f"audit database {self.path}: SQLite refused WAL mode (got {mode!r}); "
                "put FAIRGATE_AUDIT_DB on a local file system"
            )
        self._db.execute(f"PRAGMA synchronous={self.synchronous}")
        self._db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SQLiteAuditStore(path={str(self.path)!r}, synchronous={self.synchronous})"

    def append(self, records: Sequence[AuditRecord]) -> None:
        """Insert the records in one transaction; durable (per ``synchronous``) when it returns."""
        if not records:
            return
        rows = [
            (r.request_id, r.time.timestamp(), r.action, r.policy_version, r.model_dump_json())
            for r in records
        ]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT INTO audit_decisions (request_id, ts, action, policy_version, record) "
                        "VALUES (?, ?, ?, ?, ?)",
                        rows,
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                raise AuditError(f"cannot write {len(rows)} audit records to {self.path}: {error}") from error

    def iter_records(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[AuditRecord]:
        """Records with ``since <= time < until``, oldest first."""
        query = "SELECT record FROM audit_decisions WHERE ts >= ? AND ts < ? ORDER BY ts, id"
        low = since.timestamp() if since is not None else float("-inf")
        high = until.timestamp() if until is not None else float("inf")
        with self._lock:
            rows = self._db.execute(query, (low, high)).fetchall()
        for (record,) in rows:
            yield AuditRecord.model_validate_json(record)

    def page(
        self, *, limit: int, before_id: int | None = None, action: str | None = None
    ) -> list[tuple[int, AuditRecord]]:
        """At most ``limit`` (id, record) pairs with id < ``before_id``, newest first (paging by id)."""
        query = "SELECT id, record FROM audit_decisions WHERE id < ?"
        args: list[Any] = [before_id if before_id is not None else 2**63 - 1]
        if action is not None:
            query += " AND action = ?"
            args.append(action)
        query += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [(int(row_id), AuditRecord.model_validate_json(record)) for row_id, record in rows]

    def append_event(self, event: AdminEvent) -> None:
        """Append one operator action (its own small transaction)."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO audit_events (ts, kind, event) VALUES (?, ?, ?)",
                    (event.time.timestamp(), event.kind, event.model_dump_json()),
                )
            except sqlite3.Error as error:
                raise AuditError(f"cannot write an admin event to {self.path}: {error}") from error

    def events(self, *, limit: int, before_id: int | None = None) -> list[tuple[int, AdminEvent]]:
        """At most ``limit`` (id, event) pairs with id < ``before_id``, newest first."""
        high = before_id if before_id is not None else 2**63 - 1
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT id, event FROM audit_events WHERE id < ? ORDER BY id DESC LIMIT ?", (high, limit)
                ).fetchall()
            except sqlite3.OperationalError:  # a read-only file written before the table existed
                return []
        return [(int(row_id), AdminEvent.model_validate_json(event)) for row_id, event in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM audit_decisions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def default_audit_path(bentoml_home: str | Path = "~/bentoml") -> Path:
    """``<bentoml_home>/fairgate/audit.sqlite3``: beside the model store the service already uses.

    The service passes ``BENTOML_HOME`` (read into ``AuditSettings.bentoml_home``), so a
    test session's private BentoML home isolates its audit file too.
    """
    return Path(bentoml_home).expanduser() / "fairgate" / "audit.sqlite3"


def _retry_while_locked(step: Callable[[], None], *, timeout_s: float) -> None:
    """Run ``step``, again while SQLite answers "database is locked", for up to ``timeout_s``.

    Why: BentoML starts its workers at the same moment, and each opens the audit file. Turning
    a new file to WAL needs an exclusive lock, and SQLite fails that at once instead of waiting
    out ``busy_timeout`` when waiting could deadlock: on this machine 11 of 90 simultaneous
    opens of a new file failed so, and a worker that fails here never serves.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as error:
            locked = "locked" in str(error) or "busy" in str(error)
            if not locked or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def open_audit_store(location: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> AuditStore:
    """A store for ``location``: a path or ``sqlite:///path``; other URLs are not built yet."""
    text = str(location)
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite://")
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise AuditError(
            f"FAIRGATE_AUDIT_DB: the {scheme!r} audit store is not built yet; use a SQLite path "
            "(the AuditStore protocol in service/audit.py is the seam for PostgreSQL)"
        )
    return SQLiteAuditStore(path=text, synchronous=synchronous)


class _ItemLike(Protocol):
    text: str
    group: str | None


class AuditTrail:
    """Turns a batch's results into records of its flag/block decisions and appends them."""

    def __init__(
        self,
        *,
        store: AuditStore,
        policy_version: str,
        models: Mapping[str, str],
        store_text: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.policy_version = policy_version
        self.models = dict(models)
        self.store_text = store_text
        self._clock = clock

    def records(self, items: Sequence[_ItemLike], results: Sequence[Any]) -> list[AuditRecord]:
        """The records of the flagged and blocked items (``results`` as ``ClassifyResult``)."""
        if len(items) != len(results):
            raise ValueError(f"got {len(items)} items but {len(results)} results; pass one result per item")
        when = datetime.fromtimestamp(self._clock(), tz=UTC)
        records = []
        for item, result in zip(items, results, strict=True):
            if result.action not in AUDITED_ACTIONS:
                continue
            records.append(
                AuditRecord(
                    request_id=result.request_id,
                    time=when,
                    policy_version=self.policy_version,
                    models=self.models,
                    action=result.action,
                    reasons=[_plain(r) for r in result.reasons],
                    label=result.label,
                    scores=dict(result.scores),
                    toxicity=dict(result.toxicity),
                    group=item.group,
                    groups=list(result.groups),
                    text_sha256=text_digest(item.text),
                    text_chars=len(item.text),
                    text=item.text if self.store_text else None,
                    explanation=_explanation(getattr(result, "explanation", None), keep_words=self.store_text),
                )
            )
        return records

    def record(self, items: Sequence[_ItemLike], results: Sequence[Any]) -> int:
        """Append the batch's flag/block records in one transaction; returns how many."""
        records = self.records(items, results)
        if records:
            self.store.append(records)
        return len(records)


def _explanation(explanation: Any, *, keep_words: bool) -> dict[str, Any] | None:
    """The explanation as stored: without each word's text (raw user text) unless ``keep_words``."""
    if explanation is None:
        return None
    plain: dict[str, Any] = explanation.model_dump(mode="json") if isinstance(explanation, BaseModel) else dict(explanation)
    if not keep_words:
        for label in plain.get("labels", []):
            for word in label.get("words", []):
                word.pop("word", None)
    return plain


def _plain(reason: Any) -> dict[str, Any]:
    if isinstance(reason, BaseModel):
        return reason.model_dump(mode="json")
    return dict(reason)


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str, *, now: datetime | None = None, option: str = "--since") -> datetime:
    """An ISO 8601 date or time (naive means UTC), or a span back from now: ``30m``, ``2h``, ``7d``."""
    now = now if now is not None else datetime.now(tz=UTC)
    match = _RELATIVE.match(value)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{option} {value!r}: not a time; use ISO 8601 (2026-11-22, 2026-11-22T07:00:00Z) "
            "or a span back from now (30m, 2h, 7d)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def export_jsonl(
    store: AuditStore, out: TextIO, *, since: datetime | None = None, until: datetime | None = None
) -> int:
    """Write one JSON object per record, oldest first; returns the number written."""
    written = 0
    for record in store.iter_records(since=since, until=until):
        out.write(json.dumps(record.model_dump(mode="json"), ensure_ascii=False, sort_keys=True))
        out.write("\n")
        written += 1
    return written
