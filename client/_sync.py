"""The blocking client: :class:`FairgateClient`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from fairgate.client import _exchange as ex
from fairgate.client._retry import RetryPolicy
from fairgate.client.models import ClassifyItem, ClassifyResult, GuardrailsStatus

__all__ = ["FairgateClient"]


class FairgateClient:
    """Calls a fairgate server: ``/classify``, ``/classify_batch`` and ``/guardrails/status``.

    ``api_key`` is sent as ``Authorization: Bearer <key>`` (the server's ``FAIRGATE_API_KEYS``).
    503 and 429 answers are retried as ``retry`` says (after the server's ``Retry-After``,
    bounded in attempts and total wait); then :class:`~fairgate.client.FairgateUnavailableError`.
    Other 4xx raise :class:`~fairgate.client.FairgateRequestError` with the server's error JSON.
    ``max_items`` is the largest batch sent in one request: keep it at or below the server's
    ``FAIRGATE_MAX_ITEMS`` (default 256). ``transport`` and ``sleep`` are for tests.

    Use it as a context manager, or call :meth:`close`, to release the connection pool.
    """

    def __init__(
        self,
        *,
        base_url: str = "http://localhost:3000",
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        max_items: int = ex.DEFAULT_MAX_ITEMS,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retry = retry if retry is not None else RetryPolicy()
        self.max_items = ex.check_max_items(max_items)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url, headers=ex.headers(api_key, headers), timeout=timeout, transport=transport
        )

    def classify(self, text: str, group: str | None = None) -> ClassifyResult:
        """Classify one text; ``group`` is the caller's group for the per-group rate monitors."""
        body = ex.item_body(ClassifyItem(text=text, group=group))
        return ex.parse(ClassifyResult, self._call("POST", "/classify", body))

    def classify_batch(self, items: Sequence[ex.ItemLike]) -> list[ClassifyResult]:
        """Classify up to ``max_items`` items in one request; one result per item, in order."""
        body = ex.batch_body(items, max_items=self.max_items)
        return ex.parse_list(ClassifyResult, self._call("POST", "/classify_batch", body))

    def classify_many(self, items: Sequence[ex.ItemLike], *, batch_size: int | None = None) -> list[ClassifyResult]:
        """Classify any number of items in requests of at most ``batch_size`` (default ``max_items``).

        Requests go one after another (the server batches across callers itself); results
        come back in the order of ``items``. A failure raises and drops the results so far.
        """
        size = self.max_items if batch_size is None else min(batch_size, self.max_items)
        return [result for chunk in ex.chunks(items, size) for result in self.classify_batch(chunk)]

    def status(self) -> GuardrailsStatus:
        """The guardrails' live state in the worker that answered (windows, alerts, models)."""
        return ex.parse(GuardrailsStatus, self._call("GET", "/guardrails/status", None))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        attempts = ex.Attempts(self.retry)
        while True:
            request = self._http.build_request(method, path, json=body)
            try:
                response = self._http.send(request)
            except httpx.TransportError as error:
                raise ex.connection_error(error, request=request) from error
            delay = attempts.delay_after(response)
            if delay is None:
                return response
            self._sleep(delay)
