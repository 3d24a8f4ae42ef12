"""The edge's limits on a tiny Starlette app: bad bodies, load shedding, the deadline, one error shape.

The stack is the service's (fairgate.service.service): Admission -> BodyLimits -> UniformErrors.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fairgate.service.edge import Admission, BodyLimits, UniformErrors
from tests.helpers.error_shape import assert_error_shape


class Probe:
    """The app behind the middleware; counts the requests that reached it."""

    def __init__(self, delay: float = 0.0) -> None:
        self.reached = 0
        self.finished = 0
        self.delay = delay
        self.app = Starlette(
            routes=[
                Route("/classify", self.classify, methods=["POST"]),
                Route("/invalid", self.invalid, methods=["POST"]),
                Route("/unavailable", self.unavailable, methods=["POST"]),
                Route("/crash", self.crash, methods=["POST"]),
                Route("/other", self.classify, methods=["POST"]),
            ]
        )

    async def classify(self, request: Request) -> JSONResponse:
        self.reached += 1
        body = await request.json()
        await asyncio.sleep(self.delay)
        self.finished += 1
        return JSONResponse({"echo": body})

    async def invalid(self, request: Request) -> JSONResponse:
        await request.body()
        detail = [{"type": "string_too_long", "loc": ["root", 0, "text"], "msg": "String should have at most 5 characters"}]
        return JSONResponse({"error": "1 validation error for ClassifyInput", "detail": detail}, status_code=400)

    async def unavailable(self, request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"error": "An unexpected error has occurred"}, status_code=503)

    async def crash(self, request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse([{"error": "a 4xx as BentoML sends it: a list"}], status_code=422)


def limited(probe: Probe, **options: Any) -> Admission:
    """The service's stack in front of ``probe``; the Admission on the outside (its counters)."""
    settings: dict[str, Any] = {
        "paths": ["/classify", "/invalid", "/unavailable", "/crash"],
        "max_body_bytes": 2048,
        "max_concurrency": 4,
        "timeout_s": 5.0,
        "retry_after_s": 2,
        "max_json_depth": 4,
        **options,
    }
    paths = settings["paths"]
    app = UniformErrors(probe.app, paths=paths)
    app = BodyLimits(app, paths=paths, max_body_bytes=settings["max_body_bytes"], max_json_depth=settings["max_json_depth"])
    return Admission(
        app,
        paths=paths,
        max_concurrency=settings["max_concurrency"],
        timeout_s=settings["timeout_s"],
        retry_after_s=settings["retry_after_s"],
    )


async def post(app: Any, path: str, content: bytes, content_type: str = "application/json") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(path, content=content, headers={"content-type": content_type})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_good_body_passes_through() -> None:
    probe = Probe()
    response = run(post(limited(probe), "/classify", b'{"text": "hi"}'))
    assert response.status_code == 200 and response.json() == {"echo": {"text": "hi"}}
    assert probe.reached == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b'{"text": "caf\xff\xfe"}', "application/json", 400, "not valid UTF-8"),
        (b'{"text": "abc', "application/json", 400, "not valid JSON at line 1"),
        (b"[" * 50 + b"]" * 50, "application/json", 400, "nested deeper than 4"),
        (b'{"text": "' + b"x" * 3000 + b'"}', "application/json", 413, "over the limit of 2048 bytes"),
        (b"hello", "text/plain", 415, "'text/plain' is not accepted"),
        (b"text=hello", "application/x-www-form-urlencoded", 415, "application/json"),
    ],
)
def test_bad_bodies_are_4xx_and_never_reach_the_app(body: bytes, content_type: str, status: int, words: str) -> None:
    probe = Probe()
    response = run(post(limited(probe), "/classify", body, content_type))
    assert words in assert_error_shape(response, status).error
    assert probe.reached == 0


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    probe = Probe()
    response = run(post(limited(probe), "/classify", json.dumps({"text": "[[[[[[{{{{{{"}).encode()))
    assert response.status_code == 200


def test_unguarded_paths_are_untouched() -> None:
    probe = Probe()
    response = run(post(limited(probe), "/other", b"[[[[[[[[]]]]]]]]"))
    assert response.status_code == 200


def test_streamed_body_over_the_limit_is_413_without_content_length() -> None:
    probe = Probe()
    middleware = limited(probe)
    chunks = [b'{"text": "', b"x" * 1500, b"x" * 1500, b'"}']
    sent: list[dict] = []

    async def receive() -> dict:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/classify", "headers": [(b"content-type", b"application/json")]}
    run(middleware(scope, receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"].startswith("body: larger than 2048 bytes")
    assert probe.reached == 0


def test_past_the_concurrency_limit_requests_get_a_fast_503_with_retry_after() -> None:
    probe = Probe(delay=0.5)
    middleware = limited(probe, max_concurrency=3)

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(*(client.post("/classify", json={"text": str(i)}) for i in range(10)))

    responses = run(burst())
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 3 + [503] * 7
    shed = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"] == "2" for r in shed)
    assert "FAIRGATE_MAX_CONCURRENCY=3" in assert_error_shape(shed[0], 503).error
    assert probe.reached == 3 and middleware.shed == 7 and middleware.in_flight == 0


def test_deadline_answers_503_and_keeps_the_slot_until_the_work_ends() -> None:
    probe = Probe(delay=0.6)
    middleware = limited(probe, max_concurrency=1, timeout_s=0.1)

    async def scenario() -> tuple[httpx.Response, httpx.Response, int, httpx.Response]:
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            started = asyncio.get_running_loop().time()
            first = await client.post("/classify", json={"text": "slow"})
            elapsed = asyncio.get_running_loop().time() - started
            assert elapsed < 0.4, f"the deadline answer took {elapsed:.2f}s"
            # The slow work is still running: its slot is taken, so the next is shed.
            second = await client.post("/classify", json={"text": "next"})
            in_flight = middleware.in_flight
            await asyncio.sleep(0.8)
            probe.delay = 0.0
            third = await client.post("/classify", json={"text": "later"})
            return first, second, in_flight, third

    first, second, in_flight, third = run(scenario())
    assert first.headers["retry-after"] == "2"
    assert "FAIRGATE_REQUEST_TIMEOUT_S" in assert_error_shape(first, 503).error
    assert "in flight" in assert_error_shape(second, 503).error
    assert in_flight == 1
    assert third.status_code == 200
    assert probe.finished == 2  # the timed-out work did finish, and released its slot
    assert middleware.in_flight == 0 and middleware.timed_out == 1


def test_validation_400_names_the_field() -> None:
    probe = Probe()
    response = run(post(limited(probe), "/invalid", b'{"text": "toolong"}'))
    assert_error_shape(response, 400)
    body = response.json()
    assert body["error"] == "invalid request: text: String should have at most 5 characters"
    assert body["detail"] == "text: String should have at most 5 characters"  # a string, as the OpenAPI says
    assert body["errors"] == [{"field": "text", "type": "string_too_long", "msg": "String should have at most 5 characters"}]
    assert int(response.headers["content-length"]) == len(response.content)


def test_app_503_gets_retry_after() -> None:
    probe = Probe()
    response = run(post(limited(probe), "/unavailable", b"{}"))
    assert response.headers["retry-after"] == "2"
    assert assert_error_shape(response, 503).error == "An unexpected error has occurred"  # already the shape: as is


def test_app_errors_in_another_shape_leave_in_the_one_shape() -> None:
    probe = Probe()
    response = run(post(limited(probe), "/crash", b"{}"))
    assert assert_error_shape(response, 422).error == "a 4xx as BentoML sends it: a list"


def test_the_deadline_counts_from_the_body_being_in() -> None:
    """A slow upload is the client's time: the deadline starts once the body has arrived."""
    probe = Probe()
    middleware = limited(probe, timeout_s=0.3)
    chunks = [b'{"text": ', b'"slow upload"}']
    sent: list[dict] = []

    async def receive() -> dict:
        await asyncio.sleep(0.25)  # two chunks: 0.5 s of upload, past the 0.3 s deadline
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/classify", "headers": [(b"content-type", b"application/json")]}
    run(middleware(scope, receive, send))
    assert sent[0]["status"] == 200 and middleware.timed_out == 0


def test_openapi_document_lists_the_middleware_statuses() -> None:
    from starlette.responses import JSONResponse as Json

    from fairgate.service.edge import ErrorResponse, OpenAPIErrors

    error_schema = {"type": "object", "title": "InvalidArgument", "properties": {"detail": {"type": "string"}}}
    spec = {
        "openapi": "3.0.2",
        "paths": {
            "/classify": {
                "post": {
                    "responses": {
                        "200": {"description": "ok"},
                        "400": {"description": "Bad Request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InvalidArgument"}}}},
                    }
                }
            },
            "/metrics": {"get": {"responses": {"200": {"description": "ok"}}}},
        },
        "components": {"schemas": {"InvalidArgument": error_schema}},
    }

    async def docs(request: Request) -> Json:
        return Json(spec)

    app = OpenAPIErrors(Starlette(routes=[Route("/docs.json", docs)]), inference_paths=["/classify"], secured_paths=["/classify"])

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.get("/docs.json")

    response = run(go())
    document = response.json()
    classify = document["paths"]["/classify"]["post"]["responses"]
    assert set(classify) == {"200", "400", "401", "413", "415", "503"}
    assert "Retry-After" in classify["503"]["headers"]
    for code in ("400", "401", "413", "415", "503"):  # every error: the one schema
        assert classify[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/FairgateError"}
    assert classify["400"]["description"] == "Bad Request"  # BentoML's description stays
    assert set(document["paths"]["/metrics"]["get"]["responses"]) == {"200"}
    schemas = document["components"]["schemas"]
    assert "InvalidArgument" not in schemas  # replaced, no longer referenced
    expected = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    assert schemas["FieldError"] == expected.pop("$defs")["FieldError"]
    assert schemas["FairgateError"] == expected
    assert schemas["FairgateError"]["properties"]["detail"]["type"] == "string"
    assert schemas["FairgateError"]["required"] == ["error"]
    assert int(response.headers["content-length"]) == len(response.content)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, b'{"error": "body: not valid JSON"}', None),  # already the shape: left as is
        (405, b"Method Not Allowed", "Method Not Allowed"),  # the router's plain text
        (404, b'{"detail": "Not Found"}', "Not Found"),  # starlette's HTTPException
        (415, b'[{"error": "pickle is not allowed"}]', "pickle is not allowed"),  # BentoML's 4xx list
        (500, b'{"error": 3, "trace": "..."}', "Internal Server Error"),  # nothing usable: the phrase
        (599, b"", "HTTP 599"),
    ],
)
def test_any_error_body_becomes_the_one_shape(status: int, body: bytes, error: str | None) -> None:
    from fairgate.service.edge.uniform_errors import uniform_error

    reshaped = uniform_error(status, body)
    assert (reshaped.error if reshaped is not None else None) == error


def explain_limited(probe: Probe, max_explained: int) -> BodyLimits:
    app = UniformErrors(probe.app, paths=["/classify"])
    return BodyLimits(app, paths=["/classify"], max_body_bytes=4096, max_explained=max_explained)


@pytest.mark.parametrize(
    ("body", "passes"),
    [
        ({"items": [{"text": "a", "explain": True}] * 2}, True),
        ({"items": [{"text": "a", "explain": True}] * 3}, False),
        ({"items": [{"text": "a", "explain": True}] * 2 + [{"text": "b", "explain": False}] * 5}, True),
        ({"items": [{"text": "a", "explain": "true"}] * 3}, True),  # not a JSON true: the schema refuses it (400)
        ({"text": "a", "explain": True}, True),
    ],
)
def test_explained_items_over_the_limit_get_413_naming_it(body: dict[str, Any], passes: bool) -> None:
    probe = Probe()
    response = run(post(explain_limited(probe, 2), "/classify", json.dumps(body).encode()))
    if passes:
        assert response.status_code == 200 and probe.reached == 1
        return
    assert probe.reached == 0
    assert assert_error_shape(response, 413).error == (
        "explain: 3 items ask for an explanation, over the limit of 2 per request (FAIRGATE_MAX_EXPLAINED); "
        "ask for fewer, or split the request"
    )


def test_max_explained_zero_refuses_any_explanation() -> None:
    probe = Probe()
    response = run(post(explain_limited(probe, 0), "/classify", b'{"text": "a", "explain": true}'))
    assert response.status_code == 413 and "limit of 0" in response.json()["error"]
