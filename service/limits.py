"""Limits at the edge of the service: what a request may hold, and how much work may run at once.

Three jobs, each small, none on the model's hot loop:

- **Pydantic types** (:func:`bounded_text`, :data:`GroupName`) the request schemas use, so an
  empty, whitespace-only or oversized text, or a group that is huge or holds control
  characters, is a 400 that names the field and the limit, and never reaches a model.
- **:class:`RequestLimits`**, an ASGI middleware in front of the inference routes. BentoML
  1.4 answers a body that is not UTF-8 or not JSON, or is not ``application/json``, with a
  500 (measured: ``docs/reliability.md``), its ``max_concurrency`` with a 429 without
  ``Retry-After`` and its ``timeout`` with a 504. This middleware answers those bodies
  with 400/413/415, sheds load past ``FAIRGATE_MAX_CONCURRENCY`` requests in flight per
  worker at once with a 503 and ``Retry-After`` (no queue of its own), turns a request
  that outlives ``FAIRGATE_REQUEST_TIMEOUT_S`` into a 503 with ``Retry-After`` while
  keeping its slot until the work really ends (so slow work cannot pile up), and rewrites
  BentoML's validation 400s so their ``error`` names the field.
- **:class:`ScorerDeadline`**, a toxicity scorer wrapper with a time limit, so a hung
  scorer becomes an error that the policy's ``toxicity.on_error`` decides.

Plus :class:`RedactValidationLogs`, a logging filter: BentoML logs every rejected body
with a traceback whose pydantic message quotes the input (``input_value='...'``), which
would put raw request text in the logs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    import numpy as np
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from fairgate.guardrails.scorers import ToxicityScorer

__all__ = [
    "DEFAULT_MAX_TEXT_CHARS",
    "MAX_GROUP_CHARS",
    "GroupName",
    "LimitSettings",
    "OpenAPIErrors",
    "RedactValidationLogs",
    "RequestLimits",
    "ScorerDeadline",
    "ScorerTimeoutError",
    "bounded_text",
    "document_errors",
    "error_body",
    "install_log_redaction",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_TEXT_CHARS = 10_000
MAX_GROUP_CHARS = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# -- pydantic types ---------------------------------------------------------------------


# Unicode categories that draw nothing: controls, format characters (zero-width space and
# joiners, bidi marks, BOM), surrogates, unassigned code points and separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zs", "Zl", "Zp"})


def has_visible_character(value: str) -> bool:
    """True when some character of ``value`` draws something (not space, control or zero-width)."""
    return any(
        not char.isspace() and unicodedata.category(char) not in _INVISIBLE_CATEGORIES for char in value
    )


def _not_blank(value: str) -> str:
    if not has_visible_character(value):
        raise ValueError(
            "text is empty or has nothing visible in it (only whitespace, zero-width or control "
            "characters); send the text to classify"
        )
    return value


def _plain_group(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("group contains control characters; send a plain group name such as 'female'")
    if not value.strip():
        raise ValueError("group is empty or only whitespace; send a group name such as 'female', or null")
    return value


def bounded_text(max_chars: int = DEFAULT_MAX_TEXT_CHARS) -> Any:
    """A request text: 1..``max_chars`` characters, not only whitespace.

    ``max_chars`` goes into the JSON schema (``maxLength``), so the OpenAPI document states
    the limit and the 400 says "String should have at most N characters".
    """
    if max_chars < 1:
        raise ValueError(f"max_chars={max_chars}; the text limit must be at least 1 character")
    return Annotated[
        str,
        StringConstraints(min_length=1, max_length=max_chars),
        AfterValidator(_not_blank),
        Field(description=f"the text; 1 to {max_chars} characters, not only whitespace (FAIRGATE_MAX_TEXT_CHARS)"),
    ]


GroupName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_GROUP_CHARS),
    AfterValidator(_plain_group),
    Field(description=f"a group name, at most {MAX_GROUP_CHARS} characters, no control characters"),
]
"""A client-sent group: short and printable (it reaches logs and, bounded, metric labels)."""


# -- settings ---------------------------------------------------------------------------


class LimitSettings(BaseSettings):
    """The overload and body limits, from ``FAIRGATE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="FAIRGATE_", extra="ignore", frozen=True)

    max_concurrency: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="inference requests in flight per worker; past it a request gets 503 + Retry-After at once",
    )
    request_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="a request not answered in this time gets 503 + Retry-After (its work keeps its slot)",
    )
    retry_after_s: int = Field(default=1, ge=1, le=3600, description="the Retry-After of every 503")
    max_body_bytes: int | None = Field(
        default=None,
        ge=1024,
        description="largest accepted body; unset: enough for FAIRGATE_MAX_ITEMS texts of the maximum size",
    )
    max_json_depth: int = Field(default=8, ge=2, le=64, description="deepest JSON nesting accepted")
    scorer_timeout_s: float = Field(
        default=5.0, gt=0, le=600, description="a toxicity scoring call longer than this counts as a monitor error"
    )

    def body_limit(self, *, max_items: int, max_text_chars: int) -> int:
        """The body limit: explicit, or the largest legitimate batch with room for JSON escapes."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        # A character is at most 4 UTF-8 bytes, or 6 as a JSON \\uXXXX escape; plus keys and groups.
        return max_items * (max_text_chars * 6 + 512) + 1024


# -- the middleware ---------------------------------------------------------------------


def error_body(message: str, errors: list[dict[str, Any]] | None = None) -> bytes:
    """The JSON error of every rejection.

    ``{"error": "<what and the fix>", "detail": "<field: message; ...>", "errors": [...]}``:
    ``error`` and ``detail`` are strings, as BentoML's OpenAPI document declares for its
    error responses (BentoML itself sends ``detail`` as a list, which breaks its own
    schema); ``errors`` lists ``{field, type, msg}`` per problem for programs.
    """
    body: dict[str, Any] = {"error": message}
    if errors is not None:
        body["detail"] = "; ".join(f"{e['field']}: {e['msg']}" for e in errors)
        body["errors"] = errors
    return json.dumps(body).encode("utf-8")


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _BodyTooLarge(Exception):
    pass


def _json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether brackets nest deeper than ``limit`` outside strings (checked before parsing).

    A cheap scan: ``json.loads`` on thousands of nested brackets is slow or hits the
    recursion limit, and pydantic would then answer 500.
    """
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


def _field_path(loc: Sequence[Any]) -> str:
    """``["root", 0, "text"]`` -> ``text``; ``["items", 3, "text"]`` -> ``items[3].text``."""
    parts: list[str] = []
    for index, part in enumerate(loc):
        if index == 0 and part == "root":
            continue
        if isinstance(part, int):
            if parts:
                parts[-1] = f"{parts[-1]}[{part}]"
            continue  # /classify's single item is item 0 of BentoML's batch list: not the client's
        parts.append(str(part))
    return ".".join(parts) or "body"


def _explain_validation(payload: Any) -> bytes | None:
    """BentoML's ``{"error": "1 validation error for X", "detail": [...]}`` with a useful ``error``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("detail"), list):
        return None
    errors = []
    for item in payload["detail"]:
        if not isinstance(item, dict):
            continue
        field = _field_path(item.get("loc") or [])
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        errors.append({"field": field, "type": str(item.get("type")), "msg": message})
    if not errors:
        return None
    return error_body("invalid request: " + "; ".join(f"{e['field']}: {e['msg']}" for e in errors), errors)


class RequestLimits:
    """ASGI middleware for the inference routes: body checks, load shedding, deadline.

    ``paths`` are the routes it guards (other paths pass straight through). Keyword-only
    after ``app`` so BentoML's ``add_asgi_middleware(RequestLimits, **options)`` can build it.
    The in-flight count is per worker process, like the model and the batch queue it protects.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: Collection[str],
        max_body_bytes: int,
        max_concurrency: int,
        timeout_s: float,
        retry_after_s: int = 1,
        max_json_depth: int = 8,
    ) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.max_body_bytes = max_body_bytes
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.retry_after = (b"retry-after", str(retry_after_s).encode())
        self.retry_after_s = retry_after_s
        self.max_json_depth = max_json_depth
        self.in_flight = 0
        self.shed = 0
        self.timed_out = 0
        self._background: set[asyncio.Future[Any]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        if scope.get("method") != "POST":
            await self.app(scope, receive, send)  # the router answers 405
            return
        rejection = self._check_headers(scope)
        if rejection is not None:
            await _respond(send, *rejection)
            return
        if self.in_flight >= self.max_concurrency:
            self.shed += 1
            await _respond(
                send,
                503,
                error_body(
                    f"overloaded: {self.in_flight} requests in flight on this worker "
                    f"(FAIRGATE_MAX_CONCURRENCY={self.max_concurrency}); retry after {self.retry_after_s} s"
                ),
                [self.retry_after],
            )
            return
        self.in_flight += 1
        released = False

        def release(_: Any = None) -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight -= 1

        kept = False
        try:
            try:
                body = await self._read_body(receive)
            except _BodyTooLarge:
                await _respond(
                    send,
                    413,
                    error_body(
                        f"body: larger than {self.max_body_bytes} bytes (FAIRGATE_MAX_BODY_BYTES); "
                        "send fewer or shorter items"
                    ),
                )
                return
            rejection = self._check_body(body)
            if rejection is not None:
                await _respond(send, *rejection)
                return
            # True: the work outlived the deadline and releases its slot when it ends.
            kept = await self._run(scope, body, receive, send, release)
        finally:
            if not kept:
                release()

    def _check_headers(self, scope: Scope) -> tuple[int, bytes] | None:
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            return 415, error_body(
                f"content-type: {content_type.decode('latin-1')!r} is not accepted; "
                "send the body as application/json"
            )
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return 400, error_body("content-length: not a number")
            if size > self.max_body_bytes:
                return 413, error_body(
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

    def _check_body(self, body: bytes) -> tuple[int, bytes] | None:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as error:
            return 400, error_body(
                f"body: not valid UTF-8 (byte {error.start}); encode the JSON body as UTF-8"
            )
        if _json_depth_exceeds(body, self.max_json_depth):
            return 400, error_body(f"body: JSON nested deeper than {self.max_json_depth} levels")
        try:
            json.loads(body or b"{}")
        except (ValueError, RecursionError) as error:
            where = f" at line {error.lineno}, column {error.colno}" if isinstance(error, json.JSONDecodeError) else ""
            return 400, error_body(f"body: not valid JSON{where}; send a JSON object such as {{\"text\": \"...\"}}")
        return None

    async def _run(
        self, scope: Scope, body: bytes, receive: Receive, send: Send, release: Callable[..., None]
    ) -> bool:
        """Run the app with the deadline; True when the deadline answered and the work goes on."""
        state = _ResponseState(send=send, retry_after=self.retry_after)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the real disconnect notice

        task = asyncio.ensure_future(self.app(scope, replay, state.send))
        done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
        if done:
            task.result()
            await state.flush()
            return False
        # Past the deadline: answer now; the batch the request joined is still computing,
        # so keep its slot until it ends, or slow work would pile up without bound.
        self.timed_out += 1
        state.muted = True
        self._background.add(task)

        def finished(future: asyncio.Future[Any]) -> None:
            self._background.discard(future)
            release()
            if not future.cancelled() and future.exception() is not None:
                logger.warning("a request that timed out later failed: %s", type(future.exception()).__name__)

        task.add_done_callback(finished)
        if not state.started:
            await _respond(
                send,
                503,
                error_body(
                    f"timeout: no answer within {self.timeout_s:g} s (FAIRGATE_REQUEST_TIMEOUT_S); "
                    f"the server is busy, retry after {self.retry_after_s} s"
                ),
                [self.retry_after],
            )
        return True


class _ResponseState:
    """Watches the app's response: adds ``Retry-After`` to 503s, rewrites validation 400s."""

    def __init__(self, *, send: Send, retry_after: tuple[bytes, bytes]) -> None:
        self._send = send
        self._retry_after = retry_after
        self.started = False
        self.muted = False
        self._held_start: Message | None = None
        self._held_body: list[bytes] = []

    async def send(self, message: Message) -> None:
        if self.muted:
            return
        if message["type"] == "http.response.start":
            self.started = True
            status = message["status"]
            headers = list(message.get("headers") or [])
            if status == 503 and not any(k.lower() == b"retry-after" for k, _ in headers):
                headers.append(self._retry_after)
                message = {**message, "headers": headers}
            if status == 400:
                self._held_start = message  # rewrite the body once it is complete
                return
            await self._send(message)
            return
        if message["type"] == "http.response.body" and self._held_start is not None:
            self._held_body.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self.flush()
            return
        await self._send(message)

    async def flush(self) -> None:
        if self._held_start is None:
            return
        start, self._held_start = self._held_start, None
        body = b"".join(self._held_body)
        self._held_body = []
        try:
            rewritten = _explain_validation(json.loads(body))
        except ValueError:
            rewritten = None
        if rewritten is not None:
            headers = [(k, v) for k, v in start.get("headers") or [] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(rewritten)).encode()))
            start = {**start, "headers": headers}
            body = rewritten
        await self._send(start)
        await self._send({"type": "http.response.body", "body": body, "more_body": False})


# -- the OpenAPI document ---------------------------------------------------------------

_ERROR_SCHEMA = {
    "type": "object",
    "title": "FairgateError",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "title": "Message"},
        "detail": {"type": "string", "title": "Error Detail"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "type": {"type": "string"}, "msg": {"type": "string"}},
            },
        },
    },
    "description": "A rejected request: what was wrong, the limit, the fix",
}
_ERROR_RESPONSES = {
    "401": "missing or invalid API key (only when FAIRGATE_API_KEYS is set)",
    "413": "body larger than FAIRGATE_MAX_BODY_BYTES",
    "415": "body is not application/json",
    "503": "overloaded, timed out, not ready, or the model failed; retry after Retry-After seconds",
}


def document_errors(spec: dict[str, Any], *, inference_paths: Collection[str], secured_paths: Collection[str]) -> dict[str, Any]:
    """Add the statuses the middlewares answer to BentoML's OpenAPI document.

    BentoML documents 200/400/404/500 only; clients (and schemathesis) should also know
    the 401, 413, 415 and 503 that :class:`RequestLimits` and the API keys answer, and
    that 503 carries ``Retry-After``.
    """
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    components["FairgateError"] = _ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/FairgateError"}
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes = []
            if path in inference_paths:
                codes += ["413", "415", "503"]
            if path in secured_paths:
                codes.append("401")
            for code in codes:
                response: dict[str, Any] = {
                    "description": _ERROR_RESPONSES[code],
                    "content": {"application/json": {"schema": ref}},
                }
                if code == "503":
                    response["headers"] = {
                        "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
                    }
                operation["responses"].setdefault(code, response)
    return spec


class OpenAPIErrors:
    """ASGI middleware: rewrites ``GET /docs.json`` with :func:`document_errors`."""

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


# -- logs -------------------------------------------------------------------------------


class RedactValidationLogs(logging.Filter):
    """Strip request content from logged rejections.

    BentoML logs each rejected body at ERROR with the exception's traceback; a pydantic
    ``ValidationError`` prints ``input_value='<the text>'``. This filter keeps one WARNING
    line naming the error types and fields, and drops the traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            errors = exc.errors(include_input=False, include_url=False, include_context=False)
            # An unknown key's name is client data too: name only the known fields.
            summary = ", ".join(
                "an unknown field (extra_forbidden)"
                if e["type"] == "extra_forbidden"
                else f"{_field_path(e['loc'])} ({e['type']})"
                for e in errors[:10]
            )
            record.msg = f"rejected a request body: {exc.error_count()} validation error(s): {summary}"
        elif isinstance(exc, (UnicodeDecodeError, json.JSONDecodeError)):
            record.msg = f"rejected a request body: {type(exc).__name__}"
        else:
            return True
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_REDACTED_LOGGERS = ("bentoml._internal.server.http_app", "bentoml.access", "_bentoml_impl.server.app")


def install_log_redaction(logger_names: Iterable[str] = _REDACTED_LOGGERS) -> None:
    """Attach :class:`RedactValidationLogs` to BentoML's request loggers (idempotent)."""
    for name in logger_names:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactValidationLogs) for f in target.filters):
            target.addFilter(RedactValidationLogs())


# -- scorer deadline --------------------------------------------------------------------


class ScorerTimeoutError(TimeoutError):
    """The toxicity scorer did not answer in time; the guard applies ``toxicity.on_error``."""


class ScorerDeadline:
    """A toxicity scorer with a time limit per call.

    Each call runs on one helper thread and waits at most ``timeout_s``. A call that
    times out keeps running (a thread cannot be killed); until it ends every new call
    fails at once instead of queueing behind it, so a hung scorer costs one thread, not
    an unbounded queue. Forwards ``encoding=`` and ``tokenizer_fingerprint`` so the guard
    still shares the classifier's tokenisation.
    """

    def __init__(self, *, scorer: ToxicityScorer, timeout_s: float) -> None:
        self.scorer = scorer
        self.timeout_s = timeout_s
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="fairgate-scorer")
        self._lock = threading.Lock()
        self._busy: concurrent.futures.Future[Any] | None = None

    @property
    def categories(self) -> Sequence[str]:
        return self.scorer.categories

    def __getattr__(self, name: str) -> Any:
        if name == "tokenizer_fingerprint":
            return getattr(self.scorer, name)  # AttributeError when the scorer has none
        raise AttributeError(name)

    def score(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        with self._lock:
            if self._busy is not None and not self._busy.done():
                raise ScorerTimeoutError(
                    f"toxicity scorer still busy with a call that exceeded {self.timeout_s:g} s "
                    "(FAIRGATE_SCORER_TIMEOUT_S)"
                )
            future = self._pool.submit(self.scorer.score, texts, **kwargs)
            self._busy = future
        try:
            return future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            raise ScorerTimeoutError(
                f"toxicity scorer took longer than {self.timeout_s:g} s on a batch of {len(texts)} "
                "(FAIRGATE_SCORER_TIMEOUT_S)"
            ) from None
