"""Body limits for the inference routes: a body must be small, UTF-8, JSON and sent as JSON.

BentoML 1.4 answers a body that is not UTF-8, not JSON, nested thousands deep, or sent as
``text/plain`` with a 500 ("An unexpected error has occurred"), and accepts form and
multipart bodies (measured: ``docs/reliability.md``). :class:`BodyLimits` answers those
before BentoML parses anything: 415 for another content type, 413 past the byte limit
(from ``Content-Length`` before reading, or while reading a streamed body), 400 for bytes
that are not UTF-8, JSON nested deeper than the limit, or no JSON at all, and 413 when more
items ask for ``"explain": true`` than ``max_explained`` (``FAIRGATE_MAX_EXPLAINED``): it is
counted here, per request, because with ``FAIRGATE_BATCHING=bentoml`` the API method only
sees requests merged into one batch. The body it has read is handed on unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from starlette.datastructures import Headers

from fairgate.service.edge.errors import error_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimits", "explained_items", "json_depth_exceeds"]


class _BodyTooLarge(Exception):
    """The streamed body passed the byte limit (raised while reading, before it is all in)."""


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether brackets nest deeper than ``limit`` outside strings (checked before parsing).

    A cheap scan: ``json.loads`` on thousands of nested brackets is slow or hits the
    recursion limit, and pydantic would then answer 500. A body with no more opening
    brackets than ``limit`` cannot nest deeper, whatever its strings hold: counted in C,
    that skips the byte-by-byte loop for every ordinary request.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    in_string = False
    escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


class BodyLimits:
    """ASGI middleware: 400/413/415 for bodies the inference routes must not parse.

    ``paths`` are the routes it guards; other paths and other methods than POST pass
    straight through (the router answers 405). Keyword-only after ``app`` so BentoML's
    ``add_asgi_middleware(BodyLimits, **options)`` can build it.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: Collection[str],
        max_body_bytes: int,
        max_json_depth: int = 8,
        max_explained: int | None = None,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        # Called with "body" for each refused body (edge metrics: fairgate_shed_total{reason="body"}).
        self.on_reject = on_reject
        self.paths = frozenset(paths)
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.max_explained = max_explained  # None: not counted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        rejection = self._check_headers(Headers(scope=scope))
        if rejection is None:
            try:
                body = await self._read_body(receive)
            except _BodyTooLarge:
                rejection = (
                    413,
                    f"body: larger than {self.max_body_bytes} bytes (FAIRGATE_MAX_BODY_BYTES); "
                    "send fewer or shorter items",
                )
            else:
                rejection = self._check_body(body)
        if rejection is not None:
            if self.on_reject is not None:
                self.on_reject("body")
            await error_response(*rejection)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the real disconnect notice

        await self.app(scope, replay, send)

    def _check_headers(self, headers: Headers) -> tuple[int, str] | None:
        content_type = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type != "application/json":
            return 415, f"content-type: {content_type!r} is not accepted; send the body as application/json"
        length = headers.get("content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return 400, "content-length: not a number"
            if size > self.max_body_bytes:
                return 413, (
                    f"body: {size} bytes is over the limit of {self.max_body_bytes} bytes "
                    "(FAIRGATE_MAX_BODY_BYTES); send fewer or shorter items"
                )
        return None

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _check_body(self, body: bytes) -> tuple[int, str] | None:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as error:
            return 400, f"body: not valid UTF-8 (byte {error.start}); encode the JSON body as UTF-8"
        if json_depth_exceeds(body, self.max_json_depth):
            return 400, f"body: JSON nested deeper than {self.max_json_depth} levels"
        try:
            parsed = json.loads(body or b"{}")
        except (ValueError, RecursionError) as error:
            where = f" at line {error.lineno}, column {error.colno}" if isinstance(error, json.JSONDecodeError) else ""
            return 400, f"body: not valid JSON{where}; send a JSON object such as {{\"text\": \"...\"}}"
        if self.max_explained is not None:
            asked = explained_items(parsed)
            if asked > self.max_explained:
                return 413, (
                    f"explain: {asked} items ask for an explanation, over the limit of {self.max_explained} "
                    "per request (FAIRGATE_MAX_EXPLAINED); ask for fewer, or split the request"
                )
        return None


def explained_items(body: object) -> int:
    """How many items of a parsed ``/classify`` or ``/classify_batch`` body ask for ``"explain": true``.

    Only a JSON ``true`` counts; any other value is left to the schema to refuse (400).
    """
    if not isinstance(body, dict):
        return 0
    items = body.get("items")
    if isinstance(items, list):
        return sum(1 for item in items if isinstance(item, dict) and item.get("explain") is True)
    return 1 if body.get("explain") is True else 0
