"""Readiness for the inference routes: 503 with the reason until the worker can answer.

A worker loads its models and policy in a background thread after BentoML starts it.
Without this gate a request during loading (or after a failed load) would reach the batch
and come back as BentoML's generic error; with it the client learns why, and when to retry.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from fairgate.service.edge.errors import error_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ReadinessGate"]


class ReadinessGate:
    """ASGI middleware: ``paths`` answer 503 + ``Retry-After`` while ``not_ready()`` gives a reason.

    ``not_ready`` returns None once the worker is ready, else the reason to send. It is
    asked on every request to ``paths`` (an attribute read once loaded), so it must be cheap.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: Collection[str],
        not_ready: Callable[[], str | None],
        retry_after_s: int = 1,
    ) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.not_ready = not_ready
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in self.paths:
            reason = self.not_ready()
            if reason is not None:
                await error_response(503, reason, retry_after_s=self.retry_after_s)(scope, receive, send)
                return
        await self.app(scope, receive, send)
