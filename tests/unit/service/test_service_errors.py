"""The service's own 503s (not ready, queue full, a failed model) leave in the one error shape.

The live paths are covered by tests/integration (not ready: test_service_server; a failed
model, the deadline, shedding, a full queue: reliability/test_faults_server); these check
the same answers without a server.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fairgate.service.edge import ReadinessGate, error_response
from fairgate.service.edge.metrics import EdgeMetrics
from fairgate.service.settings import FairgateSettings, LimitSettings
from tests.helpers.error_shape import assert_error_shape


async def ok(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


APP = Starlette(routes=[Route("/classify", ok, methods=["POST"]), Route("/metrics", ok)])


def call(app: Any, method: str, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.request(method, path, json={"text": "x"} if method == "POST" else None)

    return asyncio.run(go())


def test_not_ready_is_a_503_with_the_reason_and_retry_after() -> None:
    reasons: list[str | None] = ["fairgate is loading its models and policy; retry shortly"]
    gate = ReadinessGate(APP, paths=["/classify"], not_ready=lambda: reasons[0], retry_after_s=3)
    response = call(gate, "POST", "/classify")
    assert assert_error_shape(response, 503).error == reasons[0]
    assert response.headers["retry-after"] == "3"
    assert call(gate, "GET", "/metrics").status_code == 200  # other paths never wait
    reasons[0] = None
    assert call(gate, "POST", "/classify").status_code == 200


def test_error_response_refuses_a_success_status() -> None:
    with pytest.raises(ValueError, match="needs a 4xx or 5xx status"):
        error_response(200, "fine")


@pytest.mark.parametrize("failure", ["queue_full", "model_failure"])
def test_a_full_queue_or_a_failed_model_is_a_503_in_the_shape(failure: str) -> None:
    from fairgate.service import service
    from fairgate.service._batcher import QueueFull
    from fairgate.service._pipeline import ModelFailure

    error = (
        QueueFull("the batch queue is full (4 items queued, limit 4); retry shortly or raise FAIRGATE_MAX_QUEUE_ITEMS")
        if failure == "queue_full"
        else ModelFailure("classifier failed on a batch of 1: RuntimeError")
    )

    class FailingBatcher:
        async def submit(self, items: list[Any]) -> list[Any]:
            raise error

    settings = FairgateSettings(limits=LimitSettings(retry_after_s=7))
    registry = CollectorRegistry()
    metrics = EdgeMetrics(registry=registry)
    worker = SimpleNamespace(_batcher=FailingBatcher(), settings=settings, edge_metrics=metrics)
    answer = asyncio.run(service.FairgateWorker._decide(worker, [object()]))

    response = httpx.Response(answer.status_code, headers=answer.headers.raw, content=answer.body)
    assert assert_error_shape(response, 503).error == str(error)
    assert response.headers["retry-after"] == "7"
    # A full queue is shed (fairgate_shed_total{reason="queue"}); a failed model is not shedding.
    shed = registry.get_sample_value("fairgate_shed_total", {"reason": "queue"})
    assert shed == (1.0 if failure == "queue_full" else None)
