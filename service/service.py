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
- ``/admin/...`` (an ops key, always; :mod:`fairgate.service.admin`): ``POST /admin/policy``
  (reload: a YAML body, or empty to re-read ``FAIRGATE_POLICY``; also ``kill -HUP`` on a
  worker), ``POST /admin/windows/reset``, ``POST /admin/check``, ``GET /admin/audit`` and
  ``GET /admin/audit/events``. Each acts on the worker that answers.
- BentoML's ``/healthz``, ``/livez``, ``/readyz`` (ready once both models and the policy
  are loaded, in a background thread), ``/metrics`` and ``/docs.json``.

Reliability and access (docs/reliability.md), as small ASGI middlewares in front of the routes
(:mod:`fairgate.service.edge`): optional API keys (:mod:`fairgate.service.auth`), load shedding
past ``FAIRGATE_MAX_CONCURRENCY`` and a request deadline, body checks, one JSON error shape,
readiness; 4xx, or 503 with ``Retry-After``. Every flag/block decision is appended to the
audit trail (:mod:`fairgate.service.audit`) inside its batch, before the answer leaves.

The service is assembled by :func:`build_service` from one :class:`FairgateSettings`, so a
test can build it with other settings; serving imports neither torch nor transformers.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import anyio.to_thread
import bentoml
from bentoml.exceptions import ServiceUnavailable
from fastapi import FastAPI, Query, Request
from starlette.responses import JSONResponse

from fairgate.service._batcher import MicroBatcher
from fairgate.service._io import batch_result_output, single_item_input, single_result_output
from fairgate.service.admin import (
    AdminError,
    AuditEventsPage,
    AuditPage,
    PolicyAdmin,
    PolicyReloaded,
    ResetRequest,
    WindowsReset,
)
from fairgate.service.auth import (
    ANONYMOUS,
    DOC_PATHS,
    OPS_PATHS,
    PRINCIPAL_SCOPE_KEY,
    ApiKeyAuth,
    KeyRing,
    is_admin_path,
)
from fairgate.service.edge import (
    Admission,
    BodyLimits,
    OpenAPIErrors,
    ReadinessGate,
    UniformErrors,
    error_response,
    install_log_redaction,
)
from fairgate.service.edge.metrics import EdgeMetrics
from fairgate.service.schemas import (
    ClassifyRequest,
    ClassifyResult,
    GuardrailsStatusResponse,
    WorkerInfo,
    classify_batch_request_type,
    classify_request_type,
)
from fairgate.service.settings import FairgateSettings

if TYPE_CHECKING:
    from fairgate.service._runtime import Runtime

__all__ = ["ADMIN_ROUTES", "INFERENCE_ROUTES", "STATUS_ROUTE", "FairgateWorker", "build_service"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

INFERENCE_ROUTES = ("/classify", "/classify_batch")
STATUS_ROUTE = "/guardrails/status"
ADMIN_ROUTES = ("/admin/policy", "/admin/windows/reset", "/admin/check", "/admin/audit", "/admin/audit/events")
# The admin errors in the OpenAPI document (each referring to the one error shape).
_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid ops key (FAIRGATE_OPS_API_KEYS)"},
    403: {"description": "admin endpoints are disabled: no FAIRGATE_OPS_API_KEYS configured"},
    503: {"description": "not ready yet, or the window store failed; retry after Retry-After seconds"},
}


class FairgateWorker:
    """What one worker process does, whatever the settings: load, batch, answer or say why not.

    :func:`build_service` derives the BentoML service class from it, adding what BentoML
    needs in the class itself (the model references, the API methods with their batch
    sizes, the status route) and ``settings``.
    """

    settings: ClassVar[FairgateSettings]
    edge_metrics: ClassVar[EdgeMetrics]
    classifier_model: ClassVar[bentoml.models.BentoModel]
    guard_model: ClassVar[bentoml.models.BentoModel]

    def __init__(self) -> None:
        # BentoML's server logging shows only WARNING for loggers outside "bentoml";
        # let ours say at INFO what was loaded (never request text: see the pipeline).
        for name in ("fairgate",):
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(logging.INFO)
        install_log_redaction()  # what hide_input_in_errors cannot cover (service.edge.redaction)
        self._runtime: Runtime | None = None
        self._error: str | None = None
        self._batcher: MicroBatcher[ClassifyRequest, ClassifyResult] | None = None
        if self.settings.service.batching != "bentoml":
            self._batcher = MicroBatcher(
                run=self._run_batch,
                max_batch_size=self.settings.service.max_batch_size,
                max_queue_items=self.settings.service.max_queue_items,
                on_depth=self.edge_metrics.queue_items,
            )
        self.admin = PolicyAdmin(settings=self.settings, get_runtime=lambda: self._runtime, set_runtime=self._swap)
        self._listen_for_sighup()
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
            runtime = load_runtime(settings=self.settings, classifier=classifier, guard=guard, registry=registry)
            self.edge_metrics.start()
            _freeze_loaded_heap()  # before the worker says ready: the one full collection happens here
            self._runtime = runtime
        except Exception as error:
            self._error = f"{type(error).__name__}: {error}"
            logger.error("fairgate cannot serve: %s", self._error)

    def _swap(self, runtime: Runtime) -> None:
        """Take the runtime with a new policy version (the admin reload; one assignment, atomic)."""
        self._runtime = runtime

    def _listen_for_sighup(self) -> None:
        """``kill -HUP <worker pid>`` reloads this worker's policy from its file, in place.

        Per worker on purpose: SIGHUP to the ``bentoml serve`` process itself is the
        arbiter's (circus) and restarts every worker, which also re-reads the file but
        empties every window. A handler can only be set from the main thread; where the
        worker is not built there, the endpoint is the way to reload (logged).
        """
        import signal

        if not hasattr(signal, "SIGHUP"):
            return
        if threading.current_thread() is not threading.main_thread():
            logger.info("no SIGHUP policy reload in this worker (not built on the main thread); use POST /admin/policy")
            return

        def on_hup(signum: int, frame: object) -> None:
            # Never reload inside a signal handler: it waits for the guard's lock.
            threading.Thread(
                target=self.admin.reload_from_disk, kwargs={"who": "SIGHUP"}, name="fairgate-sighup", daemon=True
            ).start()

        signal.signal(signal.SIGHUP, on_hup)

    @bentoml.on_shutdown
    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        runtime = self._runtime
        if runtime is not None and runtime.pipeline.probe_runner is not None:
            runtime.pipeline.probe_runner.close()
        if runtime is not None and runtime.pipeline.classifier_runner is not None:
            runtime.pipeline.classifier_runner.shutdown(wait=False, cancel_futures=True)

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
            if isinstance(error, QueueFull):
                self.edge_metrics.shed("queue")
            return error_response(503, str(error), retry_after_s=self.settings.limits.retry_after_s)
        return results

    def status(self) -> GuardrailsStatusResponse:
        """Windows, rates, impact ratios, alerts, policy and models of the worker that answered."""
        worker = WorkerInfo(
            pid=os.getpid(), index=bentoml.server_context.worker_index, workers=self.settings.service.workers
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


def _freeze_loaded_heap() -> None:
    """Keep everything loading built out of every later garbage collection (``gc.freeze``).

    A loaded worker holds ~145k objects the cyclic collector tracks (modules, BentoML,
    FastAPI and pydantic, the models' Python side). Every full (generation 2) collection
    walks all of them with the GIL held, so the worker answers nothing meanwhile: measured
    125-160 ms of CPU (300-500 ms wall) on the shared 2-core machine, one every ~500
    requests under load. Frozen, those objects are never walked again: a full collection
    then walks only what serving created since (0.2 ms idle, ~20 ms after a saturation
    run). They live as long as the process anyway. See issue 14 for what it does and does
    not explain of the with-Redis p99 of ``make bench REDIS=1``.
    """
    import gc

    gc.collect()  # free the loading's own garbage first: frozen objects are never freed
    gc.freeze()
    logger.info("froze %d loaded objects out of the garbage collector's full collections", gc.get_freeze_count())


def _not_ready_reason() -> str | None:
    """Why this worker cannot answer inference yet (for :class:`ReadinessGate`); None when ready."""
    try:
        instance = bentoml.get_current_service()
    except Exception:
        instance = None
    if instance is None:
        return "fairgate is starting"
    if instance.__is_ready__():
        return None
    return str(instance.not_ready_reason())


def build_service(settings: FairgateSettings) -> bentoml.Service[Any]:
    """The BentoML service for ``settings``: the class, its APIs, its routes and the edge.

    The API key files are read here (a bad one raises ``AuthError`` before anything serves).
    """
    service_settings, limits = settings.service, settings.limits
    item_type = classify_request_type(service_settings.max_text_chars)
    batch_type = classify_batch_request_type(item_type, service_settings.max_items)
    # BentoML's dispatcher only on request (see service._batcher for the measurements).
    batchable = service_settings.batching == "bentoml"
    api_keys, ops_keys = settings.auth.key_rings()
    edge_metrics = EdgeMetrics()
    status_app = FastAPI(
        title="fairgate guardrails status",
        description="Live view of the guardrails of the worker that answers.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    admin_app = FastAPI(
        title="fairgate admin",
        description="Operator actions on the worker that answers (an ops key, always).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    class Fairgate(FairgateWorker):
        """A fine-tuned ONNX classifier behind toxicity and per-group output-rate monitors."""

        # References, not loads: `bentoml build` packs both models into the bento.
        classifier_model = bentoml.models.BentoModel(service_settings.classifier_tag)
        guard_model = bentoml.models.BentoModel(service_settings.guard_tag)

        @bentoml.api(
            route="/classify",
            batchable=batchable,
            max_batch_size=service_settings.max_batch_size,
            max_latency_ms=service_settings.max_latency_ms,
            input_spec=single_item_input(item_type),
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
            batchable=batchable,
            max_batch_size=service_settings.max_batch_size,
            max_latency_ms=service_settings.max_latency_ms,
            input_spec=batch_type,
            output_spec=batch_result_output(),
        )
        async def classify_batch(self, items: list[ClassifyRequest]) -> list[ClassifyResult]:
            """Classify up to FAIRGATE_MAX_ITEMS items (default 256); one result per item, in order."""
            return await self._decide(items)  # type: ignore[return-value]  # or a 503 JSONResponse, sent as is

        # BentoML binds a mounted FastAPI route to the service instance only when the
        # method is the decorated class's own (not inherited), hence this one-liner here.
        @status_app.get("/status", response_model=GuardrailsStatusResponse)
        def guardrails_status(self) -> GuardrailsStatusResponse:
            """Windows, rates, impact ratios, alerts, policy and models of the worker that answered."""
            return self.status()

        @admin_app.post(
            "/policy",
            response_model=PolicyReloaded,
            responses={
                **_ADMIN_ERRORS,
                400: {"description": "the body is not UTF-8 YAML"},
                409: {"description": "a changed policy under the version in force; change `version:`"},
                422: {"description": "the policy is invalid (key, value, fix); the old one keeps serving"},
            },
            openapi_extra={
                "requestBody": {
                    "required": False,
                    "description": "a policy file's YAML; empty: re-read FAIRGATE_POLICY",
                    "content": {"application/yaml": {"schema": {"type": "string"}}},
                }
            },
        )
        async def admin_policy(self, request: Request) -> PolicyReloaded | JSONResponse:
            """Swap this worker's policy between batches: the YAML body, or FAIRGATE_POLICY re-read when empty."""
            body = await request.body()
            who = request.scope.get(PRINCIPAL_SCOPE_KEY, ANONYMOUS)
            return await _admin(self, lambda: self.admin.reload_policy(body, who=who))

        @admin_app.post("/windows/reset", response_model=WindowsReset, responses={**_ADMIN_ERRORS, 404: {"description": "no such monitor or group"}})
        async def admin_reset(self, request: Request, target: ResetRequest) -> WindowsReset | JSONResponse:
            """Empty the windows of a monitor, of a group (in every monitor), or of one group of one monitor."""
            who = request.scope.get(PRINCIPAL_SCOPE_KEY, ANONYMOUS)
            return await _admin(self, lambda: self.admin.reset_windows(target, who=who))

        @admin_app.post("/check", response_model=GuardrailsStatusResponse, responses=_ADMIN_ERRORS)
        async def admin_check(self) -> GuardrailsStatusResponse | JSONResponse:
            """Run every rate monitor's check now; answers the status after it."""

            def check() -> GuardrailsStatusResponse:
                self.admin.check_now()
                return self.status()

            return await _admin(self, check)

        @admin_app.get("/audit", response_model=AuditPage, responses={**_ADMIN_ERRORS, 404: {"description": "the audit trail is off"}})
        async def admin_audit(
            self,
            limit: int = Query(50, description="records per page (1..500)"),
            before_id: int | None = Query(None, description="the previous page's next_before_id"),
            action: str | None = Query(None, pattern="^(flag|block)$", description="flag or block; both when absent"),
        ) -> AuditPage | JSONResponse:
            """Recent flagged/blocked records, newest first; raw text only where the trail stores it."""
            return await _admin(self, lambda: self.admin.audit_page(limit=limit, before_id=before_id, action=action))

        @admin_app.get("/audit/events", response_model=AuditEventsPage, responses={**_ADMIN_ERRORS, 404: {"description": "the audit trail is off"}})
        async def admin_audit_events(
            self,
            limit: int = Query(50, description="events per page (1..500)"),
            before_id: int | None = Query(None, description="the previous page's next_before_id"),
        ) -> AuditEventsPage | JSONResponse:
            """Recent operator actions (policy changes, window resets), newest first."""
            return await _admin(self, lambda: self.admin.audit_events(limit=limit, before_id=before_id))

    Fairgate.settings = settings
    Fairgate.edge_metrics = edge_metrics
    service = bentoml.service(
        workers=service_settings.workers,
        # BentoML's own timeout (504) is only a backstop: the edge's Admission answers 503 first.
        traffic={"timeout": max(60, int(limits.request_timeout_s) + 10)},
        # No per-request log line on the hot path; FAIRGATE_ACCESS_LOG=true turns it back on.
        logging={"access": {"enabled": service_settings.access_log}},
        labels={"project": "fairgate"},
        description="Text classification behind live toxicity and per-group rate guardrails.",
    )(bentoml.asgi_app(admin_app, path="/admin")(bentoml.asgi_app(status_app, path="/guardrails")(Fairgate)))
    _add_edge(service, settings, api_keys=api_keys, ops_keys=ops_keys, metrics=edge_metrics)
    return service


async def _admin(worker: FairgateWorker, action: Callable[[], T]) -> T | JSONResponse:
    """Run an admin action off the event loop (it may wait for the guard's lock); errors in the one shape."""
    try:
        return await anyio.to_thread.run_sync(action)
    except AdminError as error:
        retry = worker.settings.limits.retry_after_s if error.status == 503 else None
        return error_response(error.status, str(error), retry_after_s=retry)


def _add_edge(
    service: bentoml.Service[Any],
    settings: FairgateSettings,
    *,
    api_keys: KeyRing,
    ops_keys: KeyRing,
    metrics: EdgeMetrics,
) -> None:
    """The edge middlewares, outermost first (fairgate.service.edge): keys before any work, then
    the documented errors, admission (load shedding, deadline), the body checks, the one error
    shape, readiness."""
    limits, protect_docs = settings.limits, settings.auth.api_keys_protect_docs

    def secured_paths(paths: Collection[str]) -> list[str]:
        """The documented paths that need a key (for the OpenAPI document's 401s)."""
        secured = []
        for path in paths:
            if is_admin_path(path):
                secured.append(path)
            elif path in OPS_PATHS:
                if len(ops_keys):
                    secured.append(path)
            elif len(api_keys) and (protect_docs or path not in DOC_PATHS):
                secured.append(path)
        return secured

    service.add_asgi_middleware(
        ApiKeyAuth,
        api_keys=api_keys,
        ops_keys=ops_keys,
        protect_docs=protect_docs,
        on_failure=metrics.auth_failure,
    )
    service.add_asgi_middleware(OpenAPIErrors, inference_paths=INFERENCE_ROUTES, secured_paths=secured_paths)
    service.add_asgi_middleware(
        Admission,
        paths=INFERENCE_ROUTES,
        max_concurrency=limits.max_concurrency,
        timeout_s=limits.request_timeout_s,
        retry_after_s=limits.retry_after_s,
        on_shed=metrics.shed,
    )
    service.add_asgi_middleware(
        BodyLimits,
        paths=INFERENCE_ROUTES,
        max_body_bytes=limits.body_limit(
            max_items=settings.service.max_items, max_text_chars=settings.service.max_text_chars
        ),
        max_json_depth=limits.max_json_depth,
        max_explained=limits.max_explained,
        on_reject=metrics.shed,
    )
    service.add_asgi_middleware(UniformErrors, paths=(*INFERENCE_ROUTES, STATUS_ROUTE, *ADMIN_ROUTES))
    service.add_asgi_middleware(
        ReadinessGate, paths=INFERENCE_ROUTES, not_ready=_not_ready_reason, retry_after_s=limits.retry_after_s
    )


# The one thing done at import, because BentoML requires it: `bentoml serve`, `bentoml build`
# and every worker import this module and take the service from this name, and its class, API
# batch sizes and middlewares must exist then. So the settings are read (a bad value fails
# `bentoml serve` here, naming the variable) and the service assembled; models load later,
# per worker, in FairgateWorker's background thread.
Fairgate = build_service(FairgateSettings.from_env())
