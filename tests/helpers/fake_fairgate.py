"""A stand-in for the fairgate HTTP API, for client tests through ``httpx.MockTransport``.

It answers like the service (the shapes of service/schemas.py, the error JSON of
service/edge/errors.py) but decides nothing: each result's ``request_id`` is the item's text, so
a test can check order. ``script`` queues responses (e.g. 503s with Retry-After) that are
sent before the normal answers; every request is kept in ``requests``.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import httpx

STATUS: dict[str, Any] = {
    "ready": True,
    "error": None,
    "worker": {"pid": 123, "index": 1, "workers": 1},
    "window_scope": "worker",
    "degraded": False,
    "policy_path": "/policy.yaml",
    "policy_version": "7",
    "models": [
        {"role": "classifier", "tag": "fairgate-classifier:abc", "variant": "int8", "task": "sentiment",
         "labels": ["negative", "positive"]},
    ],
    "shared_tokenization": True,
    "guardrails": None,
}


def result_for(item: dict[str, Any]) -> dict[str, Any]:
    """The answer for one item: allowed, labelled, ``request_id`` = the text."""
    return {
        "request_id": item["text"],
        "label": "positive",
        "scores": {"negative": 0.1, "positive": 0.9},
        "action": "allow",
        "reasons": [],
        "toxicity": {"toxicity": 0.01},
        "groups": [item.get("group") or "none"],
    }


def error_response(status: int, message: str, *, retry_after: str | None = None, **extra: Any) -> httpx.Response:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return httpx.Response(status, json={"error": message, **extra}, headers=headers)


class FakeFairgate:
    """The handler for ``httpx.MockTransport(fake.handle)`` (sync) and ``fake.ahandle`` (async)."""

    def __init__(self, *, max_items: int = 256) -> None:
        self.max_items = max_items
        self.requests: list[httpx.Request] = []
        self.script: deque[httpx.Response] = deque()

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            return self.script.popleft()
        body = json.loads(request.content) if request.content else None
        if request.method == "POST" and request.url.path == "/classify":
            return httpx.Response(200, json=result_for(body))
        if request.method == "POST" and request.url.path == "/classify_batch":
            items = body["items"]
            if len(items) > self.max_items:
                return error_response(400, f"items: at most {self.max_items} items (FAIRGATE_MAX_ITEMS)")
            return httpx.Response(200, json=[result_for(item) for item in items])
        if request.method == "GET" and request.url.path == "/guardrails/status":
            return httpx.Response(200, json=STATUS)
        return error_response(404, "Not Found")

    async def ahandle(self, request: httpx.Request) -> httpx.Response:
        return self.handle(request)

    def batch_sizes(self) -> list[int]:
        return [len(json.loads(r.content)["items"]) for r in self.requests if r.url.path == "/classify_batch"]
