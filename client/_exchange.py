"""What the sync and async clients share: request bodies, reading answers, retry bookkeeping.

The two clients differ only in how they send and sleep; everything that decides (which
status is an error, whether to retry, what the exception says) lives here once, as plain
functions over ``httpx.Response``, so both behave the same and tests can check it once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from fairgate import __version__
from fairgate.client._retry import RetryPolicy, parse_retry_after
from fairgate.client.errors import (
    FairgateAuthError,
    FairgateConnectionError,
    FairgateHTTPError,
    FairgateRequestError,
    FairgateResponseError,
    FairgateServerError,
    FairgateUnavailableError,
)
from fairgate.client.models import ClassifyItem

logger = logging.getLogger("fairgate.client")

ItemLike = ClassifyItem | str | Mapping[str, Any]
"""An item: a :class:`ClassifyItem`, a bare text, or a mapping with ``text`` and ``group``."""

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")

DEFAULT_MAX_ITEMS = 256  # the server's default FAIRGATE_MAX_ITEMS
_SHOWN_BODY_CHARS = 300

# What to do, by status, after the server's own message.
_FIXES: dict[int, str] = {
    400: "fix the field the server names",
    401: "pass api_key= with a key from the server's FAIRGATE_API_KEYS",
    403: "pass api_key= with a key the server accepts for this path",
    404: "check base_url: it must be the root of a fairgate server (e.g. http://localhost:3000)",
    405: "check base_url and the client version: this path does not take this method",
    413: "send fewer or shorter items per request (the server's FAIRGATE_MAX_BODY_BYTES)",
    415: "send JSON (the client does; a proxy in between may have changed the request)",
    422: "fix the field the server names",
    429: "send fewer requests at once, or raise the server's limits",
    500: "the server failed on this request; see its log (the error names the request)",
    503: "the server is overloaded, not ready or timed out: send fewer requests at once, raise the "
    "server's FAIRGATE_MAX_CONCURRENCY or add replicas",
    504: "the server took too long: send smaller batches, or raise its timeout",
}
_GIVE_UP_FIX = "or allow longer with RetryPolicy(max_attempts=..., max_total_wait_s=...)"


def _body(item: ClassifyItem) -> dict[str, Any]:
    """``explain`` only when asked: a server older than explanations refuses unknown fields."""
    body = item.model_dump()
    if not body["explain"]:
        del body["explain"]
    return body


def item_body(item: ItemLike) -> dict[str, Any]:
    """The JSON of one item; a bad item fails here, naming what to pass instead."""
    if isinstance(item, ClassifyItem):
        return _body(item)
    if isinstance(item, str):
        return {"text": item, "group": None}
    if isinstance(item, Mapping):
        try:
            return _body(ClassifyItem.model_validate(dict(item)))
        except ValidationError as error:
            raise ValueError(
                f"item {dict(item)!r} is not {{'text': str, 'group': str | None}}: {error.errors()[0]['msg']}"
            ) from None
    raise TypeError(f"item of type {type(item).__name__}: pass a str, a ClassifyItem or a mapping with 'text'")


def batch_body(items: Sequence[ItemLike], *, max_items: int) -> dict[str, Any]:
    """The body of one ``/classify_batch`` request, checked against the batch size limit."""
    if not items:
        raise ValueError("classify_batch needs at least one item (the server refuses an empty batch)")
    if len(items) > max_items:
        raise ValueError(
            f"{len(items)} items in one request, over max_items={max_items}; "
            "use classify_many(), which splits them into requests of at most max_items"
        )
    return {"items": [item_body(item) for item in items]}


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``, in order."""
    if size < 1:
        raise ValueError(f"batch size {size}: use 1 or more")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check_max_items(max_items: int) -> int:
    if max_items < 1:
        raise ValueError(f"max_items={max_items}: use the server's FAIRGATE_MAX_ITEMS (default 256)")
    return max_items


def headers(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    """Request headers: JSON, a user agent with the version, and the key as a bearer token."""
    result = {"accept": "application/json", "user-agent": f"fairgate-client/{__version__}"}
    if api_key is not None:
        if not api_key.strip():
            raise ValueError("api_key is empty: pass a key from the server's FAIRGATE_API_KEYS, or None")
        result["authorization"] = f"Bearer {api_key.strip()}"
    result.update(extra or {})
    return result


def connection_error(error: httpx.TransportError, *, request: httpx.Request) -> FairgateConnectionError:
    kind = "timed out" if isinstance(error, httpx.TimeoutException) else "failed"
    return FairgateConnectionError(
        f"{request.method} {request.url} {kind}: {error or type(error).__name__}; check that the server is running "
        "(make serve) and reachable at base_url, or raise timeout= for long batches"
    )


def parse(model: type[ModelT], response: httpx.Response) -> ModelT:
    """The 2xx body as ``model``; a mismatch means client and server versions differ."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as error:
        raise _mismatch(response, error) from None


def parse_list(model: type[ModelT], response: httpx.Response) -> list[ModelT]:
    try:
        return TypeAdapter(list[model]).validate_json(response.content)  # type: ignore[valid-type]
    except ValidationError as error:
        raise _mismatch(response, error) from None


def _mismatch(response: httpx.Response, error: ValidationError) -> FairgateResponseError:
    return FairgateResponseError(
        f"{response.request.method} {response.request.url.path}: the answer does not match fairgate.client "
        f"{__version__} ({error.error_count()} problems, first: {error.errors()[0]['loc']} "
        f"{error.errors()[0]['msg']}); install the client version that matches the server"
    )


def _server_error(response: httpx.Response) -> tuple[str, dict[str, Any] | None]:
    """(the server's message, its JSON body or None)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        message = body.get("error")
        if not isinstance(message, str):
            message = json.dumps(body)[:_SHOWN_BODY_CHARS]
        detail = body.get("detail")
        if isinstance(detail, str) and detail and detail not in message:
            message = f"{message} ({detail})"
        return message, body
    text = response.text.strip()[:_SHOWN_BODY_CHARS]
    return (text or response.reason_phrase or "no body"), None


def error_for(response: httpx.Response) -> FairgateHTTPError:
    """The exception for a final error status: its message names the call, the server's words and the fix."""
    method, path, status = response.request.method, response.request.url.path, response.status_code
    message, body = _server_error(response)
    fix = _FIXES.get(status, "see the server's message")
    text = f"{method} {path} -> {status} {response.reason_phrase}: {message}; {fix}"
    cls: type[FairgateHTTPError]
    if status in (401, 403):
        cls = FairgateAuthError
    elif 400 <= status < 500:
        cls = FairgateRequestError
    else:
        cls = FairgateServerError
    return cls(text, method=method, path=path, status_code=status, error=message, body=body)


class Attempts:
    """The retry bookkeeping of one call: how many sent, how long slept, whether to go on."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.sent = 0
        self.waited_s = 0.0

    def delay_after(self, response: httpx.Response) -> float | None:
        """None when ``response`` is the answer; seconds to sleep before retrying; raises otherwise."""
        self.sent += 1
        status = response.status_code
        if status < 400:
            return None
        if status not in self.policy.statuses:
            raise error_for(response)
        retry_after = parse_retry_after(response.headers)
        delay = self.policy.delay(retry=self.sent, retry_after_s=retry_after)
        if self.sent >= self.policy.max_attempts:
            raise self._give_up(response, retry_after, why=f"{self.sent} attempts, the most allowed")
        if self.waited_s + delay > self.policy.max_total_wait_s:
            raise self._give_up(
                response,
                retry_after,
                why=f"{self.sent} attempts; waiting {delay:g} s more would exceed "
                f"max_total_wait_s={self.policy.max_total_wait_s:g}",
            )
        self.waited_s += delay
        logger.info(
            "%s %s -> %d, retrying in %.2f s (attempt %d of %d)",
            response.request.method,
            response.request.url.path,
            status,
            delay,
            self.sent + 1,
            self.policy.max_attempts,
        )
        return delay

    def _give_up(self, response: httpx.Response, retry_after: float | None, *, why: str) -> FairgateUnavailableError:
        method, path, status = response.request.method, response.request.url.path, response.status_code
        message, body = _server_error(response)
        text = (
            f"{method} {path} -> {status} {response.reason_phrase} after {why} "
            f"({self.waited_s:g} s waited): {message}; {_FIXES.get(status, 'retry later')}, {_GIVE_UP_FIX}"
        )
        return FairgateUnavailableError(
            text,
            method=method,
            path=path,
            status_code=status,
            error=message,
            body=body,
            attempts=self.sent,
            waited_s=self.waited_s,
            retry_after_s=retry_after,
        )
