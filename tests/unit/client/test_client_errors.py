"""Errors leave the sync client as specific exceptions carrying the server's error JSON and the fix."""

from __future__ import annotations

import httpx
import pytest

from fairgate.client import (
    FairgateAuthError,
    FairgateClient,
    FairgateConnectionError,
    FairgateRequestError,
    FairgateResponseError,
    FairgateServerError,
)
from tests.helpers.fake_fairgate import FakeFairgate, error_response


def client_for(fake: FakeFairgate, *, base_url: str = "http://fairgate.test", **kwargs) -> FairgateClient:
    return FairgateClient(base_url=base_url, transport=httpx.MockTransport(fake.handle), **kwargs)


def test_400_carries_the_servers_error_json() -> None:
    fake = FakeFairgate()
    body = {"error": "invalid request", "detail": "text: has no visible character",
            "errors": [{"field": "text", "msg": "has no visible character"}]}
    fake.script.append(httpx.Response(400, json=body))
    with client_for(fake) as client, pytest.raises(FairgateRequestError) as raised:
        client.classify("\u200b")
    error = raised.value
    assert error.status_code == 400 and error.body == body
    assert error.error == "invalid request (text: has no visible character)"
    assert error.field_errors == [{"field": "text", "msg": "has no visible character"}]
    assert str(error) == (
        "POST /classify -> 400 Bad Request: invalid request (text: has no visible character); "
        "fix the field the server names"
    )
    assert len(fake.requests) == 1  # a 4xx is never retried


def test_401_is_an_auth_error_that_says_to_pass_a_key() -> None:
    fake = FakeFairgate()
    fake.script.append(error_response(401, "missing or invalid API key; send Authorization: Bearer <key>"))
    with client_for(fake) as client, pytest.raises(FairgateAuthError, match=r"401 Unauthorized: missing or invalid API"
                                                    r" key.*pass api_key="):
        client.status()


def test_api_key_goes_in_the_bearer_header() -> None:
    fake = FakeFairgate()
    with client_for(fake, api_key="k" * 32) as client:
        client.classify("hi")
    assert fake.requests[0].headers["authorization"] == "Bearer " + "k" * 32
    assert fake.requests[0].headers["user-agent"].startswith("fairgate-client/")
    with pytest.raises(ValueError, match="api_key is empty"):
        FairgateClient(api_key=" ")


def test_413_names_the_body_limit_and_a_plain_text_body_is_kept() -> None:
    fake = FakeFairgate()
    fake.script.append(httpx.Response(413, text="too large"))
    with client_for(fake) as client, pytest.raises(FairgateRequestError, match="FAIRGATE_MAX_BODY_BYTES") as raised:
        client.classify_batch(["a", "b"])
    assert raised.value.body is None and raised.value.error == "too large"


def test_500_is_a_server_error_and_not_retried() -> None:
    fake = FakeFairgate()
    fake.script.append(error_response(500, "the model failed"))
    with client_for(fake) as client, pytest.raises(FairgateServerError, match="500 Internal Server Error: the model"):
        client.classify("x")
    assert len(fake.requests) == 1


def test_404_says_to_check_base_url() -> None:
    with client_for(FakeFairgate(), base_url="http://fairgate.test/wrong") as client, pytest.raises(
        FairgateRequestError, match="check base_url"
    ):
        client.classify("x")


def test_an_unreachable_server_names_the_url_and_what_to_check() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = FairgateClient(base_url="http://fairgate.test:3000", transport=httpx.MockTransport(refuse))
    with client, pytest.raises(FairgateConnectionError, match=r"POST http://fairgate.test:3000/classify failed: "
                                                              r"connection refused; check that the server is running"):
        client.classify("x")


def test_an_answer_of_another_shape_says_the_versions_differ() -> None:
    fake = FakeFairgate()
    fake.script.append(httpx.Response(200, json={"request_id": "r", "verdict": "ok"}))
    with client_for(fake) as client, pytest.raises(FairgateResponseError, match="install the client version"):
        client.classify("x")
