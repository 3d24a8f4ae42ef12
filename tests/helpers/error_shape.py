"""The one error shape, asserted: every 4xx/5xx the service answers is an ``ErrorResponse``."""

from __future__ import annotations

import httpx

from fairgate.service.edge.errors import ErrorResponse

ERROR_KEYS = frozenset({"error", "detail", "errors"})


def assert_error_shape(response: httpx.Response, status: int) -> ErrorResponse:
    """``response`` has ``status``, a JSON body with no key outside the shape and a message,
    and ``Retry-After`` when it is a 503; returns the parsed body."""
    assert response.status_code == status, (status, response.status_code, response.text)
    assert response.headers["content-type"].split(";")[0] == "application/json", response.headers
    assert int(response.headers["content-length"]) == len(response.content)
    body = response.json()
    assert isinstance(body, dict) and set(body) <= ERROR_KEYS, body
    parsed = ErrorResponse.model_validate(body)
    assert parsed.error.strip(), body
    if parsed.errors is not None:
        assert parsed.detail == "; ".join(f"{e.field}: {e.msg}" for e in parsed.errors), body
    if status == 503:
        assert int(response.headers["retry-after"]) >= 1, response.headers
    return parsed
