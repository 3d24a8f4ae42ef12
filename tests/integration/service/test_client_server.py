"""fairgate.client against a real server with the tiny models: one text, a batch split into
requests, the status, the API key, and retries of a real 503 with Retry-After.

Two servers for the module: one behind an API key, and one whose scorer sleeps 3 s with
FAIRGATE_MAX_CONCURRENCY=1, so a second request while one is in flight is shed with 503
and ``Retry-After: 1``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from fairgate.client import (
    FairgateAuthError,
    FairgateClient,
    FairgateUnavailableError,
    RetryPolicy,
)
from loadtests._server import BentoServer
from tests.helpers.tiny_models import TinyStore
from tests.integration.service._harness import SplitPolicy, service_env

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

API_KEY = "client-test-key-0123456789abcdef"
MAX_ITEMS = 8  # service_env's FAIRGATE_MAX_ITEMS


@pytest.fixture(scope="module")
def keyed_server(start_service, tiny_store: TinyStore, test_policy: SplitPolicy) -> Iterator[BentoServer]:
    env = service_env(tiny_store, test_policy, FAIRGATE_WORKERS="1", FAIRGATE_API_KEYS=API_KEY)
    server = start_service(env, name="client-keyed")
    server.wait_ready(headers={"authorization": f"Bearer {API_KEY}"})
    yield server


@pytest.fixture(scope="module")
def busy_server(start_service, tiny_store: TinyStore, test_policy: SplitPolicy) -> Iterator[BentoServer]:
    env = service_env(
        tiny_store,
        test_policy,
        FAIRGATE_WORKERS="1",
        FAIRGATE_FAULTS="scorer=sleep:3",
        FAIRGATE_SCORER_TIMEOUT_S="30",
        FAIRGATE_MAX_CONCURRENCY="1",
    )
    server = start_service(env, name="client-busy")
    server.wait_ready()
    yield server


def test_classifies_a_text_and_a_long_batch_in_order(keyed_server: BentoServer, test_policy: SplitPolicy) -> None:
    with FairgateClient(base_url=keyed_server.url, api_key=API_KEY, max_items=MAX_ITEMS) as client:
        one = client.classify(test_policy.benign_text, group="female")
        texts = [test_policy.toxic_text if i % 3 == 0 else test_policy.benign_text for i in range(19)]
        many = client.classify_many([{"text": t, "group": "male"} for t in texts])
        status = client.status()
    assert one.action == "allow" and one.label is not None and one.groups == ["female"]
    assert len(many) == 19 and len({r.request_id for r in many}) == 19
    assert [r.action for r in many] == ["block" if t == test_policy.toxic_text else "allow" for t in texts]
    blocked = next(r for r in many if r.blocked)
    assert blocked.label is None and blocked.reasons[0].code == "toxicity_toxicity"
    assert blocked.reasons[0].threshold == pytest.approx(test_policy.threshold)
    assert status.ready and status.policy_version == test_policy.version
    assert {m.role for m in status.models} == {"classifier", "guard"}


def test_without_the_key_the_server_says_which_variable(keyed_server: BentoServer) -> None:
    with FairgateClient(base_url=keyed_server.url) as client, pytest.raises(FairgateAuthError) as raised:
        client.classify("hello")
    assert raised.value.status_code == 401 and "FAIRGATE_API_KEYS" in raised.value.error


def _occupy(server: BentoServer, text: str, answers: list[int]) -> threading.Thread:
    """One slow request in flight (the scorer sleeps 3 s), holding the only slot."""

    def run() -> None:
        answers.append(httpx.post(server.url + "/classify", json={"text": text}, timeout=60).status_code)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.8)  # let it reach the scorer
    return thread


def test_retries_a_real_503_then_gives_up_after_its_bound(busy_server: BentoServer, test_policy: SplitPolicy) -> None:
    answers: list[int] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    thread = _occupy(busy_server, test_policy.benign_text, answers)
    started = time.monotonic()
    with FairgateClient(
        base_url=busy_server.url, retry=RetryPolicy(max_attempts=2), sleep=sleep
    ) as client, pytest.raises(FairgateUnavailableError) as raised:
        client.classify(test_policy.benign_text)
    assert time.monotonic() - started < 2.2  # the slot was still held: both attempts shed
    error = raised.value
    assert (error.status_code, error.attempts, error.retry_after_s) == (503, 2, 1.0)
    assert sleeps == [1.0] and "FAIRGATE_MAX_CONCURRENCY=1" in error.error

    # With room to wait, the same call gets through once the slow request is done.
    with FairgateClient(base_url=busy_server.url, retry=RetryPolicy(max_attempts=10), sleep=sleep) as client:
        result = client.classify(test_policy.benign_text)
    assert result.action == "allow" and len(sleeps) >= 2
    thread.join(timeout=30)
    assert answers == [200]
