"""The admin actions without a server: reload (body or file), refusals that change nothing, resets, the trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from fairgate.guardrails.guard import Guard
from fairgate.guardrails.policy import Policy
from fairgate.service._runtime import Runtime
from fairgate.service.admin import AdminError, PolicyAdmin, ResetRequest, parse_policy_body
from fairgate.service.audit import AuditTrail, SQLiteAuditStore
from fairgate.service.settings import FairgateSettings

POLICY: dict[str, Any] = {
    "version": "v1",
    "groups": {"source": "request", "allowed": ["a", "b"]},
    "toxicity": {"enabled": False},
    "rates": {"monitors": [{"name": "negative", "source": "label", "outcome": "negative"}], "min_samples": 10},
}


class _Holder:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def get(self) -> Runtime:
        return self.runtime

    def set(self, runtime: Runtime) -> None:
        self.runtime = runtime


@pytest.fixture
def admin(tmp_path: Path) -> tuple[PolicyAdmin, _Holder, Path]:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(POLICY), encoding="utf-8")
    guard = Guard(policy=Policy.from_yaml(path), scorer=None, registry=CollectorRegistry())
    guard.review(guard.screen(["x", "y"], ["a", "b"]), ["negative", "positive"])
    trail = AuditTrail(store=SQLiteAuditStore(path=tmp_path / "audit.db"), policy_version="v1", models={})
    runtime = Runtime(
        pipeline=None,  # type: ignore[arg-type]  # the admin actions never touch it
        guard=guard,
        policy_path=path,
        policy_version="v1",
        models=(),
        load_seconds=0.0,
        audit=trail,
    )
    holder = _Holder(runtime)
    return PolicyAdmin(settings=FairgateSettings(), get_runtime=holder.get, set_runtime=holder.set, pid=42), holder, path


def test_a_body_reload_swaps_the_policy_keeps_windows_and_is_recorded(admin) -> None:
    actions, holder, _ = admin
    body = yaml.safe_dump({**POLICY, "version": "v2", "rates": {**POLICY["rates"], "action": "block"}}).encode()
    result = actions.reload_policy(body, who="key-0123abcd")
    assert (result.previous_version, result.version, result.kept, result.worker_pid) == ("v1", "v2", ["negative"], 42)
    assert holder.runtime.policy_version == "v2" and holder.runtime.guard.policy.rates.action == "block"
    assert holder.runtime.audit is not None and holder.runtime.audit.policy_version == "v2"
    events = actions.audit_events(limit=10, before_id=None).events
    assert [(e.event.kind, e.event.who, e.event.old_version, e.event.new_version) for e in events] == [
        ("policy_change", "key-0123abcd", "v1", "v2")
    ]


def test_an_empty_body_rereads_the_file(admin) -> None:
    actions, holder, path = admin
    path.write_text(yaml.safe_dump({**POLICY, "version": "v3"}), encoding="utf-8")
    result = actions.reload_policy(b"  \n", who="SIGHUP")
    assert result.version == "v3" and result.source == str(path)
    assert holder.runtime.guard.policy.version == "v3"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"version: [unclosed", 400, "not valid YAML at line 1"),
        (b"\xff\xfe", 400, "not UTF-8"),
        (b"- a list\n", 422, "must be a YAML mapping"),
        (b"version: v9\nrates: {window: {size: 0}}\n", 422, "rates.window.size = 0"),
        (b"version: v9\ngroups: {allowed: [a, b]}\n", 422, "no scorer was given"),  # toxicity on, no scorer
    ],
)
def test_a_bad_policy_is_refused_and_the_old_one_keeps_serving(admin, body: bytes, status: int, words: str) -> None:
    actions, holder, _ = admin
    with pytest.raises(AdminError) as refused:
        actions.reload_policy(body, who="anonymous")
    assert refused.value.status == status and words in str(refused.value)
    assert holder.runtime.policy_version == "v1" and holder.runtime.guard.policy.version == "v1"
    assert actions.audit_events(limit=10, before_id=None).events == []


def test_parse_policy_body_says_the_old_policy_keeps_serving() -> None:
    with pytest.raises(AdminError, match="the current one keeps serving"):
        parse_policy_body(b"version: x\nrates: {action: warn}\n")


def test_reset_names_unknown_monitors_with_404_and_records_a_reset(admin) -> None:
    actions, _, _ = admin
    with pytest.raises(AdminError) as unknown:
        actions.reset_windows(ResetRequest(monitor="nope"), who="anonymous")
    assert unknown.value.status == 404 and "the policy has negative" in str(unknown.value)
    emptied = actions.reset_windows(ResetRequest(group="a"), who="key-1")
    assert [(w.monitor, w.group) for w in emptied.emptied] == [("negative", "a")]
    assert actions.audit_events(limit=1, before_id=None).events[0].event.kind == "windows_reset"


def test_audit_pages_are_bounded(admin) -> None:
    actions, _, _ = admin
    with pytest.raises(AdminError, match="between 1 and 500"):
        actions.audit_page(limit=0, before_id=None, action=None)
    assert actions.audit_page(limit=5, before_id=None, action="block").records == []


def test_nothing_answers_before_the_runtime_is_loaded() -> None:
    actions = PolicyAdmin(settings=FairgateSettings(), get_runtime=lambda: None, set_runtime=lambda r: None)
    with pytest.raises(AdminError) as loading:
        actions.check_now()
    assert loading.value.status == 503


def test_a_changed_policy_under_the_same_version_is_refused_but_the_same_policy_reloads(admin) -> None:
    actions, holder, _ = admin
    same_version = yaml.safe_dump({**POLICY, "rates": {**POLICY["rates"], "action": "block"}}).encode()
    with pytest.raises(AdminError) as refused:
        actions.reload_policy(same_version, who="anonymous")
    assert refused.value.status == 409 and "change `version:`" in str(refused.value)
    assert holder.runtime.guard.policy.rates.action == "flag"
    unchanged = actions.reload_policy(b"", who="SIGHUP")  # the file is the policy in force: a no-op
    assert unchanged.previous_version == unchanged.version == "v1" and unchanged.kept == ["negative"]


def test_with_redis_a_new_version_moves_to_its_own_shared_windows(tmp_path: Path) -> None:
    """Fleet scope: the worker that reloads records into the new version's keys; the old keys stay for the others."""
    from fairgate.guardrails.redis_store import RedisWindowStore
    from fairgate.service._runtime import build_window_store
    from fairgate.service.settings import ServiceSettings
    from tests.setup.redis_server import RedisServer, require_redis

    with RedisServer(bin_dir=require_redis()) as server:
        settings = FairgateSettings(service=ServiceSettings(redis_url=server.url, redis_prefix="admin-test"))
        path = tmp_path / "policy.yaml"
        path.write_text(yaml.safe_dump(POLICY), encoding="utf-8")
        store, clock = build_window_store(settings=settings.service, policy_version="v1")
        guard = Guard(policy=Policy.from_yaml(path), scorer=None, registry=CollectorRegistry(), clock=clock, store=store)
        guard.review(guard.screen(["x", "y"], ["a", "b"]), ["negative", "positive"])
        runtime = Runtime(
            pipeline=None,  # type: ignore[arg-type]
            guard=guard,
            policy_path=path,
            policy_version="v1",
            models=(),
            load_seconds=0.0,
            window_scope="fleet",
        )
        holder = _Holder(runtime)
        actions = PolicyAdmin(settings=settings, get_runtime=holder.get, set_runtime=holder.set)
        result = actions.reload_policy(yaml.safe_dump({**POLICY, "version": "v2"}).encode(), who="key-1")
        assert result.window_scope == "fleet" and result.kept == [] and result.reset == ["negative"]
        monitor = next(m for m in guard.status().monitors if m.name == "negative")
        assert {g.group: g.n for g in monitor.groups if g.group in ("a", "b")} == {"a": 0, "b": 0}
        old = RedisWindowStore.from_url(server.url, policy_version="v1", prefix="admin-test")
        assert old.counts(["negative/a"], now=clock(), spec=guard.monitors[0].spec)["negative/a"].n == 1
        guard.review(guard.screen(["z"], ["a"]), ["negative"])
        new = RedisWindowStore.from_url(server.url, policy_version="v2", prefix="admin-test")
        assert new.counts(["negative/a"], now=clock(), spec=guard.monitors[0].spec)["negative/a"].n == 1
