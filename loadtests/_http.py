"""The HTTP side of the drivers: one pooled aiohttp session, pre-encoded JSON bodies.

aiohttp (already a BentoML dependency) costs the client less CPU per request than
httpx; on a 2-core machine shared with the server under test that matters. Bodies are
encoded once before a phase so the client does no JSON work while measuring.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

JSON_HEADERS = {"content-type": "application/json"}


def encode_bodies(payloads: Sequence[Any]) -> list[bytes]:
    """JSON-encode every payload once, ahead of the measured phase."""
    return [json.dumps(payload, separators=(",", ":")).encode() for payload in payloads]


class HttpSender:
    """``await sender(body)`` POSTs ``body`` to ``base_url + path`` and returns the status.

    Use as ``async with HttpSender(base_url=..., path=...) as send``. The response body
    is read fully (the server's serialisation is part of the work being measured).
    """

    def __init__(self, *, base_url: str, path: str, connections: int = 512) -> None:
        self._base_url = base_url.rstrip("/")
        self._path = path
        self._connections = connections
        self._session: Any = None

    async def __aenter__(self) -> Self:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections)
        self._session = aiohttp.ClientSession(base_url=self._base_url, connector=connector)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __call__(self, body: bytes) -> int:
        if self._session is None:
            raise RuntimeError("HttpSender used outside 'async with'")
        async with self._session.post(self._path, data=body, headers=JSON_HEADERS) as response:
            await response.read()
            return int(response.status)


async def post_json(base_url: str, path: str, payload: Any, *, timeout_s: float = 30.0) -> tuple[int, Any]:
    """One request, its status and decoded JSON body (for smoke checks before a phase)."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with (
        aiohttp.ClientSession(base_url=base_url.rstrip("/"), timeout=timeout) as session,
        session.post(path, json=payload) as response,
    ):
        text = await response.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        return int(response.status), body
