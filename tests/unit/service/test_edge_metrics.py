"""The edge's refusals as metrics: shed by reason, queue depth, auth failures; admin paths need an ops key."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fairgate.service._batcher import MicroBatcher, QueueFull
from fairgate.service.auth import PRINCIPAL_SCOPE_KEY, ApiKeyAuth, KeyRing, key_id
from fairgate.service.edge import Admission, BodyLimits
from fairgate.service.edge.metrics import SHED_REASONS, EdgeMetrics
from tests.helpers.error_shape import assert_error_shape

OPS_KEY = "ops-key-for-the-edge-tests"


def _fresh() -> tuple[EdgeMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = EdgeMetrics(registry=registry)
    metrics.start()
    return metrics, registry


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_every_series_exists_from_the_start_at_zero() -> None:
    _, registry = _fresh()
    for reason in SHED_REASONS:
        assert _value(registry, "fairgate_shed_total", reason=reason) == 0
    for reason in ("missing", "invalid", "admin_disabled"):
        assert _value(registry, "fairgate_auth_failures_total", reason=reason) == 0
    assert _value(registry, "fairgate_queue_items") == 0


def test_an_unknown_shed_reason_is_refused() -> None:
    metrics, _ = _fresh()
    with pytest.raises(ValueError, match="concurrency, queue, deadline, body"):
        metrics.shed("tired")


class _Slow:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.app = Starlette(routes=[Route("/classify", self.classify, methods=["POST"])])

    async def classify(self, request: Request) -> JSONResponse:
        await request.body()
        await asyncio.sleep(self.delay)
        return JSONResponse({"ok": True})


def _stack(metrics: EdgeMetrics, *, delay: float, max_concurrency: int, timeout_s: float) -> Admission:
    app = BodyLimits(_Slow(delay).app, paths=["/classify"], max_body_bytes=64, on_reject=metrics.shed)
    return Admission(
        app, paths=["/classify"], max_concurrency=max_concurrency, timeout_s=timeout_s, on_shed=metrics.shed
    )


def test_concurrency_deadline_and_body_refusals_are_counted_by_reason() -> None:
    metrics, registry = _fresh()
    stack = _stack(metrics, delay=0.3, max_concurrency=2, timeout_s=0.1)

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=stack), base_url="http://t") as client:
            burst = await asyncio.gather(*(client.post("/classify", json={"t": i}) for i in range(5)))
            await asyncio.sleep(0.4)  # the timed-out work ends and frees its slots
            too_big = await client.post("/classify", content=b"x" * 100, headers={"content-type": "application/json"})
            return [*burst, too_big]

    responses = asyncio.run(scenario())
    assert sorted(r.status_code for r in responses) == [413, 503, 503, 503, 503, 503]
    assert _value(registry, "fairgate_shed_total", reason="concurrency") == 3
    assert _value(registry, "fairgate_shed_total", reason="deadline") == 2
    assert _value(registry, "fairgate_shed_total", reason="body") == 1
    assert _value(registry, "fairgate_shed_total", reason="queue") == 0


def test_the_batcher_reports_its_queue_depth() -> None:
    depths: list[int] = []

    def run(items: list[int]) -> list[int]:
        return items

    async def scenario() -> None:
        batcher: MicroBatcher[int, int] = MicroBatcher(run=run, max_batch_size=2, max_queue_items=3, on_depth=depths.append)
        try:
            results = await asyncio.gather(batcher.submit([1]), batcher.submit([2]), batcher.submit([3]))
            assert results == [[1], [2], [3]]
            assert depths[:3] == [1, 2, 3] and depths[-1] == 0  # queued, then drained
            first = asyncio.ensure_future(batcher.submit([1, 2]))
            await asyncio.sleep(0)
            with pytest.raises(QueueFull):  # 2 queued + 2 > 3
                await batcher.submit([3, 4])
            assert await first == [1, 2]
        finally:
            batcher.close()

    asyncio.run(scenario())
    assert depths[-1] == 0


def _auth(metrics: EdgeMetrics, *, ops: tuple[str, ...]) -> tuple[ApiKeyAuth, list[Any]]:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope.get(PRINCIPAL_SCOPE_KEY))
        await JSONResponse({"ok": True})(scope, receive, send)

    return ApiKeyAuth(app, api_keys=KeyRing(()), ops_keys=KeyRing(ops), on_failure=metrics.auth_failure), seen


async def _post(app: Any, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return await client.post(path, headers=headers or {})


def test_admin_paths_are_refused_with_403_without_ops_keys_even_when_the_service_is_open() -> None:
    metrics, registry = _fresh()
    auth, seen = _auth(metrics, ops=())
    refused = asyncio.run(_post(auth, "/admin/policy"))
    assert "set FAIRGATE_OPS_API_KEYS" in assert_error_shape(refused, 403).error
    assert asyncio.run(_post(auth, "/classify")).status_code == 200  # the rest stays open
    assert _value(registry, "fairgate_auth_failures_total", reason="admin_disabled") == 1
    assert seen == [None]


def test_admin_paths_take_only_the_ops_key_and_pass_its_id_not_the_key() -> None:
    metrics, registry = _fresh()
    auth, seen = _auth(metrics, ops=(OPS_KEY,))
    assert_error_shape(asyncio.run(_post(auth, "/admin/check")), 401)
    assert_error_shape(asyncio.run(_post(auth, "/admin/check", {"X-API-Key": "not-the-ops-key-0000"})), 401)
    accepted = asyncio.run(_post(auth, "/admin/check", {"Authorization": f"Bearer {OPS_KEY}"}))
    assert accepted.status_code == 200
    import hashlib

    assert seen == [key_id(hashlib.sha256(OPS_KEY.encode()).digest())]
    assert seen[0].startswith("key-") and OPS_KEY not in seen[0]
    assert _value(registry, "fairgate_auth_failures_total", reason="missing") == 1
    assert _value(registry, "fairgate_auth_failures_total", reason="invalid") == 1
