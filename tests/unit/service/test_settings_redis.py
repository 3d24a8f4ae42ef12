"""FAIRGATE_REDIS_URL chooses the fleet-wide store; a bad one fails at start naming the
variable (never printing a password); the status response carries the guard's scope."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails import Guard, InMemoryWindowStore, Policy
from fairgate.guardrails.failover import FailoverStore
from fairgate.service._runtime import build_window_store
from fairgate.service.schemas import GuardrailsStatusResponse, WorkerInfo
from fairgate.service.settings import FairgateSettings, SettingsError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://cache:6379", "is not a Redis URL (scheme 'http')"),
        ("redis://", "names no host"),
        ("redis://cache:99999", "has a bad port"),
        ("redis://cache:6379/zero", "database 'zero' is not a number"),
    ],
)
def test_bad_redis_url_names_the_variable_and_the_forms(monkeypatch: pytest.MonkeyPatch, url: str, expected: str) -> None:
    monkeypatch.setenv("FAIRGATE_REDIS_URL", url)
    with pytest.raises(SettingsError) as caught:
        FairgateSettings.from_env()
    text = str(caught.value)
    assert f"FAIRGATE_REDIS_URL={url!r}" in text and expected in text
    assert "use redis://[:PASSWORD@]HOST[:PORT][/DB]" in text


def test_a_password_never_reaches_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRGATE_REDIS_URL", "redis://user:s3cret@cache:70000/0")
    with pytest.raises(SettingsError) as caught:
        FairgateSettings.from_env()
    assert "s3cret" not in str(caught.value)
    assert "redis://user:***@cache:70000/0" in str(caught.value)


def test_unset_or_empty_url_keeps_worker_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRGATE_REDIS_URL", "")  # what `make serve` passes without REDIS_URL
    settings = FairgateSettings.from_env().service
    assert settings.redis_url is None
    store, clock = build_window_store(settings=settings, policy_version="v1")
    assert isinstance(store, InMemoryWindowStore) and clock is time.monotonic


def test_redis_url_builds_a_failover_store_on_wall_clock_even_when_redis_is_down(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FAIRGATE_REDIS_URL", "redis://:pw@127.0.0.1:1/0")  # nothing listens on port 1
    monkeypatch.setenv("FAIRGATE_REDIS_TIMEOUT_MS", "20")
    settings = FairgateSettings.from_env().service
    assert (settings.redis_url, settings.redis_timeout_ms) == ("redis://:pw@127.0.0.1:1/0", 20)
    store, clock = build_window_store(settings=settings, policy_version="v1")
    assert isinstance(store, FailoverStore) and store.scope == "fleet" and clock is time.time
    assert "does not answer at start" in caplog.text and "pw" not in caplog.text


def test_status_response_carries_the_guards_scope_and_health() -> None:
    guard = Guard(
        policy=Policy.from_mapping({"toxicity": {"enabled": False}}),
        scorer=None,
        registry=CollectorRegistry(),
        store=InMemoryWindowStore(),
    )
    fleet = guard.status().model_copy(update={"window_scope": "fleet", "degraded": True})
    response = GuardrailsStatusResponse(ready=True, worker=WorkerInfo(pid=1, index=1, workers=2), guardrails=fleet)
    assert (response.window_scope, response.degraded) == ("fleet", True)
    local = GuardrailsStatusResponse(
        ready=True, worker=WorkerInfo(pid=1, index=1, workers=2), guardrails=guard.status()
    )
    assert (local.window_scope, local.degraded) == ("worker", False)
