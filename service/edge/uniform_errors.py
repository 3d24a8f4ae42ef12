"""Errors from behind the edge leave in fairgate's one shape, and validation errors name the field.

BentoML answers an invalid body with ``{"error": "1 validation error for ClassifyInput",
"detail": [...]}``: ``error`` says nothing useful and ``detail`` is a list, although
BentoML's own OpenAPI document declares a string. Its other errors come as
``{"error": ...}``, or as a list ``[{"error": ...}]`` (4xx BentoML exceptions), and the
router's as plain text (405). :class:`UniformErrors` holds any 4xx/5xx body of the routes
it guards and sends it on as an :class:`~fairgate.service.edge.errors.ErrorResponse`:

- a validation error becomes ``error: "invalid request: text: String should have at most
  500 characters"`` with one ``errors`` entry per field (``items[3].text`` inside a batch);
- a body already in the shape passes unchanged;
- anything else keeps its message (``error``, or a string ``detail``), or gets the HTTP
  reason phrase.

Successful responses pass through untouched, without buffering.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from fairgate.service.edge.errors import ErrorResponse, FieldError, error_response, field_path

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["UniformErrors", "uniform_error"]

_SHAPE_KEYS = frozenset(ErrorResponse.model_fields)


def _field_errors(detail: list[Any]) -> list[FieldError]:
    return [
        FieldError(
            field=field_path(item.get("loc") or []),
            type=str(item.get("type")),
            msg=str(item.get("msg", "invalid")).removeprefix("Value error, "),
        )
        for item in detail
        if isinstance(item, dict)
    ]


def uniform_error(status: int, body: bytes) -> ErrorResponse | None:
    """``body`` (an error response's) as an :class:`ErrorResponse`; None when it already is one."""
    try:
        payload: Any = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("detail"), list):
        errors = _field_errors(payload["detail"])
        if errors:
            return ErrorResponse.for_fields(errors)
    if isinstance(payload, dict) and set(payload) <= _SHAPE_KEYS:
        try:
            ErrorResponse.model_validate(payload)
        except ValidationError:
            pass
        else:
            return None
    if isinstance(payload, list) and len(payload) == 1:  # BentoML's 4xx: [{"error": ...}]
        payload = payload[0]
    if isinstance(payload, dict):
        for key in ("error", "detail"):
            if isinstance(payload.get(key), str) and payload[key]:
                return ErrorResponse(error=payload[key])
    try:
        return ErrorResponse(error=HTTPStatus(status).phrase)
    except ValueError:  # a status code http.HTTPStatus does not know
        return ErrorResponse(error=f"HTTP {status}")


class UniformErrors:
    """ASGI middleware: every 4xx/5xx of ``paths`` leaves as an ``ErrorResponse``."""

    def __init__(self, app: ASGIApp, *, paths: Collection[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def reshape(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held = message  # sent once the body is complete
                return
            if message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    start, held = held, None
                    await _send_uniform(start, b"".join(chunks), send)
                return
            await send(message)

        await self.app(scope, receive, reshape)


async def _send_uniform(start: Message, body: bytes, send: Send) -> None:
    status = int(start["status"])
    reshaped = uniform_error(status, body)
    if reshaped is None:
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return
    response = error_response(status, reshaped)
    kept = [(k, v) for k, v in start.get("headers") or [] if k.lower() not in (b"content-length", b"content-type")]
    await send({"type": "http.response.start", "status": status, "headers": [*kept, *response.raw_headers]})
    await send({"type": "http.response.body", "body": response.body, "more_body": False})
