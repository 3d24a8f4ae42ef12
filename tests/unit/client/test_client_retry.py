"""The sync client retries 503/429 after the server's Retry-After, within its bounds, then says why it stopped."""

from __future__ import annotations

import httpx
import pytest

from fairgate.client import FairgateClient, FairgateUnavailableError, RetryPolicy
from fairgate.client._retry import parse_retry_after
from tests.helpers.fake_fairgate import FakeFairgate, error_response

BUSY = "the server is busy (FAIRGATE_MAX_CONCURRENCY=2); retry after 2 s"


def client_for(fake: FakeFairgate, sleeps: list[float], **kwargs) -> FairgateClient:
    return FairgateClient(
        base_url="http://fairgate.test", transport=httpx.MockTransport(fake.handle), sleep=sleeps.append, **kwargs
    )


def test_waits_what_retry_after_says_then_answers() -> None:
    fake, sleeps = FakeFairgate(), []
    fake.script.extend([error_response(503, BUSY, retry_after="2"), error_response(503, BUSY, retry_after="1")])
    with client_for(fake, sleeps) as client:
        result = client.classify("hello", group="female")
    assert result.request_id == "hello" and result.groups == ["female"]
    assert sleeps == [2.0, 1.0]
    assert len(fake.requests) == 3


def test_gives_up_after_max_attempts_naming_status_message_and_fix() -> None:
    fake, sleeps = FakeFairgate(), []
    fake.script.extend([error_response(503, BUSY, retry_after="1")] * 5)
    with client_for(fake, sleeps, retry=RetryPolicy(max_attempts=3)) as client, pytest.raises(
        FairgateUnavailableError
    ) as raised:
        client.classify("hello")
    error = raised.value
    assert len(fake.requests) == 3 and sleeps == [1.0, 1.0]
    assert (error.status_code, error.attempts, error.waited_s, error.retry_after_s) == (503, 3, 2.0, 1.0)
    assert error.error == BUSY and error.body == {"error": BUSY}
    message = str(error)
    assert "POST /classify -> 503" in message and "3 attempts" in message and BUSY in message
    assert "FAIRGATE_MAX_CONCURRENCY or add replicas" in message and "RetryPolicy(max_attempts=" in message


def test_stops_before_a_wait_that_would_cross_the_total_bound() -> None:
    fake, sleeps = FakeFairgate(), []
    fake.script.extend([error_response(503, BUSY, retry_after="4")] * 5)
    with client_for(fake, sleeps, retry=RetryPolicy(max_attempts=10, max_total_wait_s=10)) as client, pytest.raises(
        FairgateUnavailableError, match=r"waiting 4 s more would exceed max_total_wait_s=10"
    ) as raised:
        client.status()
    assert sleeps == [4.0, 4.0]  # a third wait would make 12 s
    assert raised.value.attempts == 3 and raised.value.waited_s == 8.0


def test_a_retry_after_beyond_the_budget_fails_at_once() -> None:
    fake, sleeps = FakeFairgate(), []
    fake.script.append(error_response(503, "not ready", retry_after="3600"))
    with client_for(fake, sleeps) as client, pytest.raises(FairgateUnavailableError) as raised:
        client.classify("hello")
    assert sleeps == [] and raised.value.attempts == 1 and raised.value.retry_after_s == 3600.0


def test_429_without_retry_after_backs_off_exponentially() -> None:
    fake, sleeps = FakeFairgate(), []
    fake.script.extend([httpx.Response(429, text="Too many requests")] * 3)
    policy = RetryPolicy(max_attempts=4, backoff_s=0.5, max_backoff_s=1.5)
    with client_for(fake, sleeps, retry=policy) as client:
        assert client.classify("x").request_id == "x"
    assert sleeps == [0.5, 1.0, 1.5]


def test_max_attempts_one_never_retries() -> None:
    fake, sleeps = FakeFairgate(), []
    fake.script.append(httpx.Response(429, text="Too many requests"))
    with client_for(fake, sleeps, retry=RetryPolicy(max_attempts=1)) as client, pytest.raises(
        FairgateUnavailableError, match=r"429 Too Many Requests after 1 attempts.*Too many requests"
    ):
        client.classify("x")
    assert sleeps == []


def test_retry_after_as_seconds_or_http_date() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "3"})) == 3.0
    assert parse_retry_after(httpx.Headers({})) is None
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert parse_retry_after(httpx.Headers({"Retry-After": "-5"})) == 0.0
    date = "Wed, 21 Oct 2015 07:28:10 GMT"  # 1445412490
    assert parse_retry_after(httpx.Headers({"Retry-After": date}), now=lambda: 1445412480.0) == 10.0


@pytest.mark.parametrize(
    ("kwargs", "fix"),
    [({"max_attempts": 0}, r"use 1 \(no retry\) or more"), ({"max_total_wait_s": -1}, "finite number of seconds")],
)
def test_a_bad_policy_names_the_fix(kwargs, fix) -> None:
    with pytest.raises(ValueError, match=fix):
        RetryPolicy(**kwargs)
