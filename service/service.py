"""The guarded BentoML service: ``bentoml serve fairgate.service.service:Fairgate``.

Request path (docs/CONTRACTS.md, the README): HTTP and validation here, then per adaptive batch
``guard.screen`` -> one classifier run -> ``guard.review`` in :mod:`fairgate.service._pipeline`.

- ``POST /classify``: one ``{"text", "group"}`` object in, one result out.
- ``POST /classify_batch``: ``{"items": [...]}`` (at most ``FAIRGATE_MAX_ITEMS``), one
  result per item in order.
  Concurrent calls of both share model runs: by default through fairgate's micro-batcher
  (:mod:`fairgate.service._batcher`), with ``FAIRGATE_BATCHING=bentoml`` through BentoML's adaptive
  dispatcher (both APIs are then ``batchable=True``; see :mod:`fairgate.service._io`).
- ``GET /guardrails/status``: windows, rates, impact ratios with their upper confidence
  bound, alerts, policy version, model tags, and the worker (pid, index) that answered.
- BentoML's ``/healthz``, ``/livez``, ``/readyz`` (ready once both models and the policy
  are loaded, in a background thread), ``/metrics`` and ``/docs.json``.

Reliability and access (docs/reliability.md), as ASGI middleware in front of the routes:
optional API keys (:mod:`fairgate.service.auth`), body checks, load shedding past
``FAIRGATE_MAX_CONCURRENCY`` and a request deadline, all answering 4xx or 503 with
``Retry-After`` (:mod:`fairgate.service.limits`); every flag/block decision is appended to the audit
trail (:mod:`fairgate.service.audit`) inside its batch, before the answer leaves.

Serving imports neither torch nor transformers: ONNX Runtime, ``tokenizers`` and numpy.
Settings come from ``FAIRGATE_*`` environment variables (:mod:`fairgate.service.settings`); the
ones that shape the BentoML class (workers, batch limits, text limit) are read when this
module is imported, which is when BentoML builds the service.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import anyio.to_thread
import bentoml
from bentoml.exceptions import ServiceUnavailable
from fastapi import FastAPI
from starlette.responses import JSONResponse

from fairgate.service._batcher import MicroBatcher
from fairgate.service._io import batch_result_output, single_item_input, single_result_output
from fairgate.service.audit import AuditSettings
from fairgate.service.auth import DOC_PATHS, OPS_PATHS, ApiKeyAuth, AuthSettings
from fairgate.service.limits import (
    LimitSettings,
    OpenAPIErrors,
    RequestLimits,
    install_log_redaction,
)
from fairgate.service.schemas import (
    ClassifyRequest,
    ClassifyResult,
    GuardrailsStatusResponse,
    WorkerInfo,
    classify_batch_request_type,
    classify_request_type,
)
from fairgate.service.settings import ServiceSettings

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from fairgate.service._runtime import Runtime

logger = logging.getLogger(__name__)

# BentoML builds the service class at import; these settings shape it (see module doc).
SETTINGS = ServiceSettings.from_env()
# Reliability and access (docs/reliability.md): limits, API keys and the audit trail.
LIMITS = LimitSettings()
AUDIT = AuditSettings()
AUTH = AuthSettings()
API_KEYS, OPS_KEYS = AUTH.key_rings()  # read once at start: a bad key file fails `bentoml serve`
ITEM_TYPE = classify_request_type(SETTINGS.max_text_chars)
BATCH_TYPE = classify_batch_request_type(ITEM_TYPE, SETTINGS.max_items)
INFERENCE_ROUTES = ("/classify", "/classify_batch")
# BentoML's dispatcher only on request (see service._batcher for the measurements).
BENTOML_BATCHING = SETTINGS.batching == "bentoml"

status_app = FastAPI(
    title="fairgate guardrails status",
    description="Live view of the guardrails of the worker that answers.",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)


@bentoml.service(
    workers=SETTINGS.workers,
    # BentoML's own timeout (504) is only a backstop: RequestLimits answers 503 first.
    traffic={"timeout": max(60, int(LIMITS.request_timeout_s) + 10)},
    # No per-request log line on the hot path; FAIRGATE_ACCESS_LOG=true turns it back on.
    logging={"access": {"enabled": SETTINGS.access_log}},
    labels={"project": "fairgate"},
    description="Text classification behind live toxicity and per-group rate guardrails.",
)
@bentoml.asgi_app(status_app, path="/guardrails")
class Fairgate:
    """A fine-tuned ONNX classifier behind toxicity and per-group output-rate monitors."""

    # References, not loads: `bentoml build` packs both models into the bento.
    classifier_model = bentoml.models.BentoModel(SETTINGS.classifier_tag)
    guard_model = bentoml.models.BentoModel(SETTINGS.guard_tag)

    def __init__(self) -> None:
        # BentoML's server logging shows only WARNING for loggers outside "bentoml";
        # let ours say at INFO what was loaded (never request text: see the pipeline).
        for name in ("fairgate",):
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(logging.INFO)
        install_log_redaction()  # BentoML would log rejected bodies' text in tracebacks
        self.settings = SETTINGS
        self._runtime: Runtime | None = None
        self._error: str | None = None
        self._batcher: MicroBatcher[ClassifyRequest, ClassifyResult] | None = None
        if not BENTOML_BATCHING:
            self._batcher = MicroBatcher(
                run=self._run_batch,
                max_batch_size=SETTINGS.max_batch_size,
                max_queue_items=SETTINGS.max_queue_items,
            )
        self._loader = threading.Thread(target=self._load, name="fairgate-load", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        """Load models and policy off the event loop, so /readyz answers 503 meanwhile."""
        try:
            import prometheus_client

            from fairgate.service._runtime import load_runtime, resolve_stored_model

            cls = type(self)
            classifier = resolve_stored_model(
                cls.classifier_model, role="classifier", env_var="FAIRGATE_CLASSIFIER_TAG"
            )
            guard = resolve_stored_model(cls.guard_model, role="guard", env_var="FAIRGATE_GUARD_TAG")
            # A private registry: in BentoML's multiprocess mode the values go to the shared
            # files that /metrics reads, whatever registry they were registered in.
            registry = prometheus_client.CollectorRegistry()
            self._runtime = load_runtime(
                settings=self.settings,
                classifier=classifier,
                guard=guard,
                registry=registry,
                limits=LIMITS,
                audit=AUDIT,
            )
        except Exception as error:
            self._error = f"{type(error).__name__}: {error}"
            logger.error("fairgate cannot serve: %s", self._error)

    @bentoml.on_shutdown
    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()

    def __is_ready__(self) -> bool:
        """Ready only when both models and the policy are loaded."""
        return self._runtime is not None

    def not_ready_reason(self) -> str:
        if self._error is not None:
            return f"fairgate failed to load: {self._error}"
        return "fairgate is loading its models and policy; retry shortly"

    def _run_batch(self, items: list[ClassifyRequest]) -> list[ClassifyResult]:
        """One batch through screen -> classifier -> review (in the batch thread)."""
        runtime = self._runtime
        if runtime is None:
            raise ServiceUnavailable(self.not_ready_reason())
        results = runtime.pipeline.classify(items)
        if runtime.audit is not None:
            # Durable before any answer leaves: this runs in the batch, before the results
            # go back to the callers. A decision that cannot be recorded is not answered.
            from fairgate.service.audit import AuditError

            try:
                runtime.audit.record(items, results)
            except AuditError as error:
                logger.error("%s; answering 503 instead of unrecorded decisions", error)
                raise ServiceUnavailable("the audit trail could not be written; retry later") from error
        return results

    async def _decide(self, items: list[ClassifyRequest]) -> list[ClassifyResult] | JSONResponse:
        """Results for ``items``, or a 503 with the reason (queue full, model failure, not ready)."""
        from fairgate.service._batcher import QueueFull
        from fairgate.service._pipeline import ModelFailure

        if self._batcher is None:  # FAIRGATE_BATCHING=bentoml: BentoML formed the batch
            try:
                return await anyio.to_thread.run_sync(self._run_batch, items)
            except ModelFailure as error:
                raise ServiceUnavailable(str(error)) from error
        try:
            results = await self._batcher.submit(items)
        except (QueueFull, ModelFailure, ServiceUnavailable) as error:
            return JSONResponse({"error": str(error)}, status_code=503, headers={"Retry-After": "1"})
        return results

    @bentoml.api(
        route="/classify",
        batchable=BENTOML_BATCHING,
        max_batch_size=SETTINGS.max_batch_size,
        max_latency_ms=SETTINGS.max_latency_ms,
        input_spec=single_item_input(ITEM_TYPE),
        output_spec=single_result_output(),
    )
    async def classify(self, items: list[ClassifyRequest]) -> list[ClassifyResult]:
        """Classify one text behind the guardrails. Body: {"text": str, "group": str | null}.

        A blocked item has label null and a reason naming the monitor, the category or
        group, the figure and the threshold. Concurrent calls share model runs.
        """
        return await self._decide(items)  # type: ignore[return-value]  # or a 503 JSONResponse, sent as is

    @bentoml.api(
        route="/classify_batch",
        batchable=BENTOML_BATCHING,
        max_batch_size=SETTINGS.max_batch_size,
        max_latency_ms=SETTINGS.max_latency_ms,
        input_spec=BATCH_TYPE,
        output_spec=batch_result_output(),
    )
    async def classify_batch(self, items: list[ClassifyRequest]) -> list[ClassifyResult]:
        """Classify up to FAIRGATE_MAX_ITEMS items (default 256); one result per item, in order."""
        return await self._decide(items)  # type: ignore[return-value]  # or a 503 JSONResponse, sent as is

    @status_app.get("/status", response_model=GuardrailsStatusResponse)
    def guardrails_status(self) -> GuardrailsStatusResponse:
        """Windows, rates, impact ratios, alerts, policy and models of the worker that answered."""
        worker = WorkerInfo(
            pid=os.getpid(), index=bentoml.server_context.worker_index, workers=self.settings.workers
        )
        runtime = self._runtime
        if runtime is None:
            return GuardrailsStatusResponse(ready=False, error=self.not_ready_reason(), worker=worker)
        return GuardrailsStatusResponse(
            ready=True,
            worker=worker,
            policy_path=str(runtime.policy_path),
            policy_version=runtime.policy_version,
            models=list(runtime.models),
            shared_tokenization=runtime.pipeline.share_encoding,
            guardrails=runtime.pipeline.status(),
        )


class ReadinessGate:
    """Answer inference routes with 503 and the reason until the worker is ready.

    Without it a request during loading would reach the batch and come back as BentoML's
    generic error; with it the client learns why and when to retry.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in INFERENCE_ROUTES:
            try:
                instance = bentoml.get_current_service()
            except Exception:
                instance = None
            if instance is None or not instance.__is_ready__():
                reason = instance.not_ready_reason() if instance is not None else "fairgate is starting"
                response = JSONResponse({"error": reason}, status_code=503, headers={"Retry-After": "1"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _secured_paths(paths: Iterable[str]) -> list[str]:
    """The documented paths that need a key (for the OpenAPI document's 401s)."""
    secured = []
    for path in paths:
        if path in OPS_PATHS:
            if len(OPS_KEYS):
                secured.append(path)
        elif len(API_KEYS) and (AUTH.api_keys_protect_docs or path not in DOC_PATHS):
            secured.append(path)
    return secured


def _add_middleware(middleware: type, **options: Any) -> None:
    """Add an ASGI middleware to the service: ``Fairgate.add_asgi_middleware``.

    ``@bentoml.service`` replaced the class ``Fairgate`` with a ``bentoml.Service``; mypy still
    types the name as the class (it ignores what a class decorator returns), hence the cast.
    """
    cast("bentoml.Service[Fairgate]", Fairgate).add_asgi_middleware(middleware, **options)


# Outermost first: keys before any work, then the documented errors, then the limits
# (body checks, load shedding, deadline), then readiness.
_add_middleware(ApiKeyAuth, api_keys=API_KEYS, ops_keys=OPS_KEYS, protect_docs=AUTH.api_keys_protect_docs)
_add_middleware(OpenAPIErrors, inference_paths=INFERENCE_ROUTES, secured_paths=_secured_paths)
_add_middleware(
    RequestLimits,
    paths=INFERENCE_ROUTES,
    max_body_bytes=LIMITS.body_limit(max_items=SETTINGS.max_items, max_text_chars=SETTINGS.max_text_chars),
    max_concurrency=LIMITS.max_concurrency,
    timeout_s=LIMITS.request_timeout_s,
    retry_after_s=LIMITS.retry_after_s,
    max_json_depth=LIMITS.max_json_depth,
)
_add_middleware(ReadinessGate)
