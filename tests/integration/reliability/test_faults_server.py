"""Fault injection on live servers (FAIRGATE_FAULTS): a scorer that hangs or raises, a model
that fails, batches slower than the request deadline.

Four servers, started together: the scorer sleeps past FAIRGATE_SCORER_TIMEOUT_S under
``on_error: flag``; the scorer raises under ``on_error: block``; the classifier raises (and
the batch queue holds at most 3 items); every batch takes 2 s against a 0.5 s request
deadline. Every 503 is in the one error shape with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import yaml

from fairgate.service.audit import SQLiteAuditStore
from loadtests._server import BentoServer
from tests.helpers.error_shape import assert_error_shape
from tests.integration.reliability._server import Texts, metric_total

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def servers(start_server, texts: Texts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, BentoServer]]:
    blocking = yaml.safe_load(texts.policy.read_text())
    blocking["toxicity"]["on_error"] = "block"
    blocking_path = tmp_path_factory.mktemp("policy-block") / "policy.yaml"
    blocking_path.write_text(yaml.safe_dump(blocking), encoding="utf-8")
    started = {
        "scorer_hangs": start_server("scorer-hangs", FAIRGATE_FAULTS="scorer=sleep:3", FAIRGATE_SCORER_TIMEOUT_S="0.2"),
        "scorer_raises": start_server("scorer-raises", FAIRGATE_FAULTS="scorer=raise", FAIRGATE_POLICY=str(blocking_path)),
        "model_fails": start_server("model-fails", FAIRGATE_FAULTS="classifier=raise", FAIRGATE_MAX_QUEUE_ITEMS="3"),
        "slow_batches": start_server(
            "slow-batches",
            FAIRGATE_FAULTS="scorer=sleep:2",
            FAIRGATE_SCORER_TIMEOUT_S="30",
            FAIRGATE_REQUEST_TIMEOUT_S="0.5",
            FAIRGATE_MAX_CONCURRENCY="2",
        ),
    }
    for server in started.values():
        server.wait_ready()
    yield started


def test_hung_scorer_times_out_and_on_error_flag_decides(servers: dict[str, BentoServer], texts: Texts) -> None:
    server = servers["scorer_hangs"]
    with httpx.Client(timeout=30) as client:
        first = client.post(server.url + "/classify", json={"text": texts.block, "group": "female"})
        # The hung call still runs: the next batch fails at once rather than queueing behind it.
        second = client.post(server.url + "/classify", json={"text": texts.allow})
    for response in (first, second):
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["action"] == "flag"
        assert result["label"] is not None  # flag lets the classifier answer
        (reason,) = result["reasons"]
        assert reason["code"] == "monitor_error" and "on_error=flag" in reason["message"]
    assert first.elapsed.total_seconds() < 2.0  # the 0.2 s deadline, not the 3 s hang
    assert metric_total(server.url, "fairgate_monitor_errors_total", monitor="toxicity") == 2
    assert metric_total(server.url, "fairgate_decisions_total", action="flag", reason="monitor_error") == 2
    store = SQLiteAuditStore(path=server.workdir / "audit.sqlite3", readonly=True)
    records = {r.request_id: r for r in store.iter_records()}
    assert set(records) == {first.json()["request_id"], second.json()["request_id"]}
    assert all(r.reasons[0]["code"] == "monitor_error" for r in records.values())


def test_raising_scorer_under_on_error_block_blocks_without_a_label(servers: dict[str, BentoServer], texts: Texts) -> None:
    server = servers["scorer_raises"]
    response = httpx.post(
        server.url + "/classify_batch", json={"items": [{"text": texts.allow}, {"text": texts.flag}]}, timeout=30
    )
    assert response.status_code == 200, response.text
    for result in response.json():
        assert result["action"] == "block" and result["label"] is None and result["scores"] == {}
        assert result["reasons"][0]["code"] == "monitor_error"
        assert "on_error=block" in result["reasons"][0]["message"]
    assert metric_total(server.url, "fairgate_monitor_errors_total", monitor="toxicity") == 1  # one batch
    assert metric_total(server.url, "fairgate_decisions_total", action="block", reason="monitor_error") == 2
    assert "injected scorer fault" in server.log()


def test_failing_model_answers_503_with_retry_after_and_no_label(servers: dict[str, BentoServer], texts: Texts) -> None:
    server = servers["model_fails"]
    with httpx.Client(timeout=30) as client:
        single = client.post(server.url + "/classify", json={"text": texts.allow})
        batch = client.post(server.url + "/classify_batch", json={"items": [{"text": texts.allow}, {"text": texts.flag}]})
        # An item the guard blocks never needs the model's answer, so it is still answered.
        blocked = client.post(server.url + "/classify", json={"text": texts.block})
    for response in (single, batch):
        assert "classifier failed" in assert_error_shape(response, 503).error
    assert blocked.status_code == 200 and blocked.json()["action"] == "block"
    assert httpx.get(server.url + "/readyz", timeout=5).status_code == 200  # the process stays up


def test_a_request_larger_than_the_batch_queue_gets_503_queue_full(servers: dict[str, BentoServer], texts: Texts) -> None:
    server = servers["model_fails"]  # FAIRGATE_MAX_QUEUE_ITEMS=3: four items can never queue
    response = httpx.post(server.url + "/classify_batch", json={"items": [{"text": texts.block}] * 4}, timeout=30)
    error = assert_error_shape(response, 503).error
    assert "batch queue is full" in error and "FAIRGATE_MAX_QUEUE_ITEMS" in error


def test_requests_past_the_deadline_get_503_and_their_work_keeps_its_slot(servers: dict[str, BentoServer], texts: Texts) -> None:
    import concurrent.futures
    import time

    server = servers["slow_batches"]

    def call() -> httpx.Response:
        return httpx.post(server.url + "/classify", json={"text": texts.allow}, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(call) for _ in range(2)]
        time.sleep(0.1)
        shed = call()  # both slots are taken by work that is still running
        timed_out = [f.result() for f in slow]
    for response in timed_out:
        assert response.headers["retry-after"] == "1"
        assert "FAIRGATE_REQUEST_TIMEOUT_S" in assert_error_shape(response, 503).error
        assert response.elapsed.total_seconds() < 1.5
    assert "in flight" in assert_error_shape(shed, 503).error
    # The answered timeouts' batches still finish (about 2 s each, one after the other);
    # then the slots are free again and a request is admitted.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        again = call()
        if "in flight" not in again.text:
            break
        time.sleep(0.5)
    assert "in flight" not in again.text, again.text
