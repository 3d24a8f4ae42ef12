"""AsyncFairgateClient behaves as the sync one: retries, errors, batching."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from fairgate.client import AsyncFairgateClient, FairgateRequestError, FairgateUnavailableError, RetryPolicy
from tests.helpers.fake_fairgate import FakeFairgate, error_response


def client_for(fake: FakeFairgate, sleeps: list[float], **kwargs) -> AsyncFairgateClient:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return AsyncFairgateClient(
        base_url="http://fairgate.test", transport=httpx.MockTransport(fake.ahandle), sleep=sleep, **kwargs
    )


def test_retries_after_retry_after_then_answers() -> None:
    fake, sleeps = FakeFairgate(), []
    fake.script.extend([error_response(503, "busy", retry_after="2"), error_response(429, "slow down")])

    async def scenario():
        async with client_for(fake, sleeps) as client:
            return await client.classify("hello", group="male")

    result = asyncio.run(scenario())
    assert result.request_id == "hello" and result.groups == ["male"]
    assert sleeps == [2.0, 1.0]  # the 429 had no Retry-After: backoff_s * 2 for the second retry


def test_gives_up_after_its_bound() -> None:
    fake, sleeps = FakeFairgate(), []
    fake.script.extend([error_response(503, "not ready", retry_after="1")] * 4)

    async def scenario():
        async with client_for(fake, sleeps, retry=RetryPolicy(max_attempts=2)) as client:
            await client.classify_batch(["a"])

    with pytest.raises(FairgateUnavailableError, match=r"POST /classify_batch -> 503 .* 2 attempts.*not ready") as e:
        asyncio.run(scenario())
    assert e.value.attempts == 2 and sleeps == [1.0] and len(fake.requests) == 2


def test_4xx_raises_with_the_servers_message() -> None:
    fake, sleeps = FakeFairgate(), []
    fake.script.append(error_response(400, "group: at most 64 characters"))

    async def scenario():
        async with client_for(fake, sleeps) as client:
            await client.classify("x", group="g" * 100)

    with pytest.raises(FairgateRequestError, match="400 Bad Request: group: at most 64 characters") as raised:
        asyncio.run(scenario())
    assert raised.value.body == {"error": "group: at most 64 characters"}


def test_classify_many_splits_and_keeps_order() -> None:
    fake, sleeps = FakeFairgate(max_items=3), []
    texts = [f"t{i}" for i in range(10)]

    async def scenario():
        async with client_for(fake, sleeps, max_items=3) as client:
            return await client.classify_many(texts), await client.status()

    results, status = asyncio.run(scenario())
    assert [r.request_id for r in results] == texts
    assert fake.batch_sizes() == [3, 3, 3, 1]
    assert status.worker.pid == 123
