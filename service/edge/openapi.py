"""The error responses in the OpenAPI document: every 4xx/5xx named, all in fairgate's one shape.

BentoML documents 200/400/404/500 for its API routes, each error with a schema of its own
(``InvalidArgument``, ``NotFound``, ``InternalServerError``), and nothing for the statuses
the edge middlewares answer. :func:`document_errors` adds those (401 where a key is
needed, 413, 415 and 503 with its ``Retry-After`` on the inference routes) and points every
error response at one component schema, ``FairgateError``: the JSON schema of
:class:`~fairgate.service.edge.errors.ErrorResponse`. Clients (and schemathesis) then know
every status and body the service can answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from fairgate.service.edge.errors import ERROR_SCHEMA, error_components

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["OpenAPIErrors", "document_errors"]

_ERROR_RESPONSES = {
    "400": "invalid request: the body, a field or a limit; the message names it",
    "401": "missing or invalid API key (only when FAIRGATE_API_KEYS is set)",
    "413": "body larger than FAIRGATE_MAX_BODY_BYTES",
    "415": "body is not application/json",
    "503": "overloaded, timed out, not ready, queue full, or the model failed; retry after Retry-After seconds",
}
# BentoML's own error schemas, replaced by FairgateError wherever they are referenced.
_BENTOML_ERROR_SCHEMAS = ("InvalidArgument", "NotFound", "InternalServerError")


def _is_error(code: object) -> bool:
    return str(code)[:1] in ("4", "5")


def document_errors(
    spec: dict[str, Any], *, inference_paths: Collection[str], secured_paths: Collection[str]
) -> dict[str, Any]:
    """``spec`` with the edge's statuses added and every 4xx/5xx referring to ``FairgateError``.

    ``inference_paths`` get 400, 413, 415 and 503 (with ``Retry-After``); ``secured_paths``
    get 401. Statuses BentoML already documents keep their description. Changes ``spec``
    in place and returns it.
    """
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(error_components())
    ref = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            codes = []
            if path in inference_paths:
                codes += ["400", "413", "415", "503"]
            if path in secured_paths:
                codes.append("401")
            for code in codes:
                responses.setdefault(code, {"description": _ERROR_RESPONSES[code]})
            for code, response in responses.items():
                if not _is_error(code) or not isinstance(response, dict):
                    continue
                response["content"] = {"application/json": {"schema": dict(ref)}}
                if str(code) == "503":
                    response["headers"] = {
                        "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
                    }
    text = json.dumps(spec.get("paths", {}))
    for name in _BENTOML_ERROR_SCHEMAS:
        if f"#/components/schemas/{name}" not in text:
            schemas.pop(name, None)
    return spec


class OpenAPIErrors:
    """ASGI middleware: rewrites ``GET /docs.json`` with :func:`document_errors`.

    ``secured_paths`` may be a function of the document's paths (which of them need a key
    depends on the configured keys and on paths BentoML adds).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        inference_paths: Collection[str],
        secured_paths: Callable[[Collection[str]], Collection[str]] | Collection[str] = (),
        path: str = "/docs.json",
    ) -> None:
        self.app = app
        self.inference_paths = frozenset(inference_paths)
        self.secured_paths = secured_paths
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        if start.get("status") == 200:
            try:
                spec = json.loads(body)
                paths = list(spec.get("paths", {}))
                secured = self.secured_paths(paths) if callable(self.secured_paths) else self.secured_paths
                body = json.dumps(
                    document_errors(spec, inference_paths=self.inference_paths, secured_paths=secured)
                ).encode()
            except ValueError:
                pass
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
