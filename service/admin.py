"""The operator's actions on one worker: swap the policy, empty windows, run a check, read the trail.

Kept apart from the BentoML class so each action can be tested without a server; the
service's ``/admin/...`` routes (ops key required, :mod:`fairgate.service.auth`) only parse
the request and call these. Each action raises :class:`AdminError` with the HTTP status and
a message naming the fix, which the route answers in the one error shape.

**Per worker.** BentoML workers are separate processes, each with its own guard: a reload
reaches the worker that answered the request (its pid is in the response). Reload every
worker (``kill -HUP`` each worker pid, or repeat the request until each pid answered), or
change the file and restart (docs/reliability.md, "Changing the policy"). With
``FAIRGATE_REDIS_URL`` the shared windows are namespaced by policy version: a worker that
takes a new version starts on that version's keys, empty at first, shared with every worker
and replica that takes the same version; workers still on the old version keep the old keys,
which expire when unused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fairgate.service.audit import AdminEvent, AuditError, AuditRecord

if TYPE_CHECKING:
    from fairgate.guardrails.policy import Policy
    from fairgate.service._runtime import Runtime
    from fairgate.service.settings import FairgateSettings

__all__ = [
    "AdminError",
    "AuditEntry",
    "AuditEventEntry",
    "AuditEventsPage",
    "AuditPage",
    "PolicyAdmin",
    "PolicyReloaded",
    "ResetRequest",
    "WindowRef",
    "WindowsReset",
    "parse_policy_body",
]

logger = logging.getLogger(__name__)

MAX_PAGE = 500


class AdminError(Exception):
    """An admin request that cannot be done; ``status`` is the HTTP status, the message names the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PolicyReloaded(BaseModel):
    """The answer to a policy reload: what changed on the worker that answered."""

    previous_version: str
    version: str
    source: str = Field(description="'request body' or the file read (FAIRGATE_POLICY)")
    kept: list[str] = Field(description="rate monitors whose windows were kept (definition unchanged)")
    reset: list[str] = Field(description="rate monitors starting with empty windows (new or changed)")
    removed: list[str] = Field(description="rate monitors the new policy no longer has")
    window_scope: Literal["worker", "fleet"]
    worker_pid: int = Field(description="the worker that switched; other workers keep their policy until reloaded")


class ResetRequest(BaseModel):
    """Which windows to empty: a monitor, a group (in every monitor), or both; neither means all."""

    model_config = ConfigDict(extra="forbid")

    monitor: str | None = Field(default=None, description="a rate monitor's name; null: every monitor")
    group: str | None = Field(default=None, description="a group label value; null: every group")


class WindowRef(BaseModel):
    monitor: str
    group: str


class WindowsReset(BaseModel):
    """The windows emptied, on the worker that answered (every worker's with FAIRGATE_REDIS_URL)."""

    emptied: list[WindowRef]
    window_scope: Literal["worker", "fleet"]
    worker_pid: int


class AuditEntry(BaseModel):
    """One stored flag/block record and its id (the cursor for the next page)."""

    id: int
    record: AuditRecord


class AuditPage(BaseModel):
    """Recent flag/block records, newest first; ``text`` is present only where it was stored."""

    records: list[AuditEntry]
    next_before_id: int | None = Field(description="pass as before_id for the next (older) page; null: no more")


class AuditEventEntry(BaseModel):
    id: int
    event: AdminEvent


class AuditEventsPage(BaseModel):
    """Recent operator actions (policy changes, resets), newest first."""

    events: list[AuditEventEntry]
    next_before_id: int | None


def parse_policy_body(body: bytes, *, source: str = "request body") -> Policy:
    """Validate a policy sent as YAML; :class:`AdminError` 400 (not YAML) or 422 (not a valid policy)."""
    import yaml

    from fairgate.guardrails.policy import Policy, PolicyError

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise AdminError(400, f"{source}: not UTF-8 text; send the policy file's contents as UTF-8 YAML") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise AdminError(400, f"{source}: not valid YAML{where} ({problem}); fix the syntax") from None
    try:
        return Policy.from_mapping(data, source=source)
    except PolicyError as error:
        raise AdminError(422, f"policy refused, the current one keeps serving: {error}") from None


class PolicyAdmin:
    """The admin actions of one worker, on the runtime ``get_runtime`` returns.

    ``set_runtime`` takes the runtime with the new policy version; reloads are serialised
    by a lock of their own (two reloads at once would each swap against the other's
    policy), and each swap itself happens under the guard's lock, between batches.
    """

    def __init__(
        self,
        *,
        settings: FairgateSettings,
        get_runtime: Callable[[], Runtime | None],
        set_runtime: Callable[[Runtime], None],
        pid: int | None = None,
    ) -> None:
        self._settings = settings
        self._get_runtime = get_runtime
        self._set_runtime = set_runtime
        self._pid = pid if pid is not None else os.getpid()
        self._reload_lock = threading.Lock()

    def _runtime(self) -> Runtime:
        runtime = self._get_runtime()
        if runtime is None:
            raise AdminError(503, "fairgate is still loading its models and policy; retry shortly")
        return runtime

    # -- policy -------------------------------------------------------------------------

    def reload_policy(self, body: bytes, *, who: str) -> PolicyReloaded:
        """Validate and swap in the policy in ``body`` (YAML), or the policy file when ``body`` is empty."""
        from fairgate.guardrails.policy import PolicyError, load_policy

        runtime = self._runtime()
        if body.strip():
            source = "request body"
            policy = parse_policy_body(body, source=source)
        else:
            source = str(runtime.policy_path)
            try:
                policy = load_policy(runtime.policy_path)
            except PolicyError as error:
                raise AdminError(422, f"policy refused, the current one keeps serving: {error}") from None
        with self._reload_lock:
            runtime = self._runtime()
            guard = runtime.guard
            if policy.version == guard.policy.version and policy != guard.policy:
                raise AdminError(
                    409,
                    f"policy refused, the current one keeps serving: it differs from the policy in force but has "
                    f"the same version {policy.version!r}; change `version:` so metrics, audit records and the "
                    "shared windows can tell the two apart",
                )
            store = None
            if runtime.window_scope == "fleet" and policy.version != guard.policy.version:
                # The shared windows are namespaced by policy version (module docstring).
                from fairgate.service._runtime import build_window_store

                store, _ = build_window_store(settings=self._settings.service, policy_version=policy.version)
            try:
                change = guard.apply_policy(policy, store=store)
            except PolicyError as error:
                raise AdminError(422, f"policy refused, the current one keeps serving: {error}") from None
            if runtime.audit is not None:
                runtime.audit.policy_version = policy.version
                runtime.audit.store_text = self._settings.audit.store_text or policy.audit.store_text
            self._set_runtime(dataclasses.replace(runtime, policy_version=policy.version))
        result = PolicyReloaded(
            previous_version=change.old_version,
            version=change.new_version,
            source=source,
            kept=list(change.kept),
            reset=list(change.reset),
            removed=list(change.removed),
            window_scope="fleet" if runtime.window_scope == "fleet" else "worker",
            worker_pid=self._pid,
        )
        self._record(
            runtime,
            kind="policy_change",
            who=who,
            old_version=change.old_version,
            new_version=change.new_version,
            detail={"source": source, "kept": result.kept, "reset": result.reset, "removed": result.removed},
        )
        logger.warning(
            "policy changed by %s on worker %d: %s -> %s (from %s)",
            who,
            self._pid,
            change.old_version,
            change.new_version,
            source,
        )
        return result

    def reload_from_disk(self, *, who: str) -> None:
        """The SIGHUP path: reload the policy file, logging (not raising) a refusal."""
        try:
            self.reload_policy(b"", who=who)
        except AdminError as error:
            logger.error("%s reload refused: %s", who, error)

    # -- windows and checks ------------------------------------------------------------

    def reset_windows(self, request: ResetRequest, *, who: str) -> WindowsReset:
        from fairgate.guardrails.store import StoreError

        runtime = self._runtime()
        try:
            emptied = runtime.guard.reset_windows(monitor=request.monitor, group=request.group)
        except KeyError as error:
            raise AdminError(404, str(error.args[0])) from None
        except StoreError as error:  # the shared store failed: the operator must hear it
            raise AdminError(
                503, f"the windows could not be emptied ({error}); retry when the window store answers"
            ) from error
        self._record(
            runtime,
            kind="windows_reset",
            who=who,
            old_version=runtime.policy_version,
            new_version=runtime.policy_version,
            detail={"monitor": request.monitor, "group": request.group, "emptied": len(emptied)},
        )
        return WindowsReset(
            emptied=[WindowRef(monitor=m, group=g) for m, g in emptied],
            window_scope="fleet" if runtime.window_scope == "fleet" else "worker",
            worker_pid=self._pid,
        )

    def check_now(self) -> None:
        """Run every rate monitor's check on this worker's view of the windows now."""
        self._runtime().guard.check()

    # -- the audit trail -----------------------------------------------------------------

    def audit_page(self, *, limit: int, before_id: int | None, action: str | None) -> AuditPage:
        store = self._audit_store()
        _check_limit(limit)
        try:
            rows = store.page(limit=limit, before_id=before_id, action=action)
        except AuditError as error:
            raise AdminError(503, str(error)) from None
        entries = [AuditEntry(id=row_id, record=record) for row_id, record in rows]
        return AuditPage(records=entries, next_before_id=entries[-1].id if len(entries) == limit else None)

    def audit_events(self, *, limit: int, before_id: int | None) -> AuditEventsPage:
        store = self._audit_store()
        _check_limit(limit)
        rows = store.events(limit=limit, before_id=before_id)
        entries = [AuditEventEntry(id=row_id, event=event) for row_id, event in rows]
        return AuditEventsPage(events=entries, next_before_id=entries[-1].id if len(entries) == limit else None)

    def _audit_store(self) -> Any:
        runtime = self._runtime()
        if runtime.audit is None:
            raise AdminError(404, "the audit trail is off (FAIRGATE_AUDIT_DB=off); unset it to keep records")
        return runtime.audit.store

    def _record(self, runtime: Runtime, *, kind: Literal["policy_change", "windows_reset"], who: str, **fields: Any) -> None:
        """Append an operator action to the audit trail; a failure is logged, not raised (the action is done)."""
        if runtime.audit is None:
            return
        event = AdminEvent(time=datetime.now(tz=UTC), kind=kind, who=who, worker_pid=self._pid, **fields)
        try:
            runtime.audit.store.append_event(event)
        except AuditError as error:
            logger.error("the admin action (%s by %s) was done but not recorded: %s", kind, who, error)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise AdminError(400, f"limit={limit}: should be between 1 and {MAX_PAGE}; ask for a smaller page")

