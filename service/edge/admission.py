"""Admission for the inference routes: load shedding and the request deadline, per worker.

Both guard the same resource (the worker's batch path) with the same count of requests in
flight, so they live in one middleware:

- **Shedding.** Past ``max_concurrency`` requests in flight, a request is answered at once
  with 503 and ``Retry-After``; there is no queue of its own, so nothing waits unboundedly.
  BentoML's own ``max_concurrency`` answers 429 without ``Retry-After``, hence this.
- **Deadline.** A request not answered within ``timeout_s`` of its body being in gets 503
  with ``Retry-After``. Its batch is still computing, so the request keeps its slot until
  the work really ends: slow work cannot pile up behind answered timeouts. BentoML's own
  ``traffic.timeout`` (504) stays as a backstop above it.
- Every 503 leaving the routes carries ``Retry-After`` (the app's too: not ready, queue
  full, a failed model).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from fairgate.service.edge.errors import error_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Admission"]

logger = logging.getLogger(__name__)


class Admission:
    """ASGI middleware: 503 + ``Retry-After`` past the concurrency limit or the deadline.

    ``paths`` are the routes it guards (POST only; anything else passes straight through).
    The in-flight count is per worker process, like the model and the batch queue it
    protects; ``shed`` and ``timed_out`` count the two kinds of 503 it answered.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: Collection[str],
        max_concurrency: int,
        timeout_s: float,
        retry_after_s: int = 1,
        on_shed: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        # Called with "concurrency" or "deadline" for each 503 answered here (edge metrics).
        self.on_shed = on_shed
        self.paths = frozenset(paths)
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._retry_after = (b"retry-after", str(retry_after_s).encode())  # the header added to 503s
        self.in_flight = 0
        self.shed = 0
        self.timed_out = 0
        self._background: set[asyncio.Future[Any]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_concurrency:
            self.shed += 1
            if self.on_shed is not None:
                self.on_shed("concurrency")
            response = error_response(
                503,
                f"overloaded: {self.in_flight} requests in flight on this worker "
                f"(FAIRGATE_MAX_CONCURRENCY={self.max_concurrency}); retry after {self.retry_after_s} s",
                retry_after_s=self.retry_after_s,
            )
            await response(scope, receive, send)
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
            # True: the work outlived the deadline and releases its slot when it ends.
            kept = await self._run(scope, receive, send, release)
        finally:
            if not kept:
                release()

    async def _run(self, scope: Scope, receive: Receive, send: Send, release: Callable[..., None]) -> bool:
        """Run the app with the deadline; True when the deadline answered and the work goes on."""
        loop = asyncio.get_running_loop()
        # Set once the app's task ends or the deadline passes, whichever comes first: one
        # future and one timer per request (two asyncio.wait calls cost more on this path).
        woken: asyncio.Future[None] = loop.create_future()
        clock: asyncio.TimerHandle | None = None

        def wake(_: object = None) -> None:
            if not woken.done():
                woken.set_result(None)

        async def receive_and_watch() -> Message:
            nonlocal clock
            message = await receive()
            # The clock starts once the body is in: a slow upload is the client's time, not the server's.
            if clock is None and (message["type"] != "http.request" or not message.get("more_body", False)):
                clock = loop.call_later(self.timeout_s, wake)
            return message

        watcher = _ResponseWatcher(send=send, retry_after=self._retry_after)
        task = asyncio.ensure_future(self.app(scope, receive_and_watch, watcher.send))
        task.add_done_callback(wake)
        try:
            await woken
        finally:
            if clock is not None:
                clock.cancel()
            task.remove_done_callback(wake)
        if task.done():
            task.result()
            return False
        # Past the deadline: answer now; the batch the request joined is still computing,
        # so keep its slot until it ends, or slow work would pile up without bound.
        self.timed_out += 1
        if self.on_shed is not None:
            self.on_shed("deadline")
        watcher.muted = True
        self._background.add(task)

        def finished(future: asyncio.Future[Any]) -> None:
            self._background.discard(future)
            release()
            if not future.cancelled() and future.exception() is not None:
                logger.warning("a request that timed out later failed: %s", type(future.exception()).__name__)

        task.add_done_callback(finished)
        if not watcher.started:
            response = error_response(
                503,
                f"timeout: no answer within {self.timeout_s:g} s (FAIRGATE_REQUEST_TIMEOUT_S); "
                f"the server is busy, retry after {self.retry_after_s} s",
                retry_after_s=self.retry_after_s,
            )
            await response(scope, receive, send)
        return True


class _ResponseWatcher:
    """Passes the app's response on: adds ``Retry-After`` to a 503, drops everything once muted."""

    def __init__(self, *, send: Send, retry_after: tuple[bytes, bytes]) -> None:
        self._send = send
        self._retry_after = retry_after
        self.started = False
        self.muted = False

    async def send(self, message: Message) -> None:
        if self.muted:
            return
        if message["type"] == "http.response.start":
            self.started = True
            headers = list(message.get("headers") or [])
            if message["status"] == 503 and not any(k.lower() == b"retry-after" for k, _ in headers):
                message = {**message, "headers": [*headers, self._retry_after]}
        await self._send(message)
