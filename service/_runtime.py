"""Load what one worker serves with: both ONNX models, the policy, the guard, the pipeline.

Kept apart from the BentoML class so it can run (and fail) in a plain process: the
service calls :func:`load_runtime` in a background thread and is ready when it returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fairgate.service.schemas import ModelInfo
from fairgate.service.settings import FairgateSettings, ServiceSettings

if TYPE_CHECKING:  # imported where used at run time, so this module stays light
    from prometheus_client import CollectorRegistry

    from fairgate.guardrails.guard import Guard
    from fairgate.guardrails.scorers import ToxicityScorer
    from fairgate.guardrails.store import MonitorStore, WindowStore
    from fairgate.service._pipeline import GuardedClassifier
    from fairgate.service.audit import AuditTrail

__all__ = [
    "ModelNotFoundError",
    "Runtime",
    "StoredModelRef",
    "build_window_store",
    "load_runtime",
    "resolve_stored_model",
]

logger = logging.getLogger(__name__)

_BUILD_HINT = {
    "classifier": "fairgate build classifier --if-missing",
    "guard": "fairgate build guard --if-missing",
}


class ModelNotFoundError(LookupError):
    """A model tag the service needs is not in the local BentoML store."""


class StoredModel(Protocol):
    """A model in the local BentoML store (``bentoml.models.Model``): what the service reads of it."""

    @property
    def tag(self) -> object: ...

    @property
    def path(self) -> str: ...


class ModelReference(Protocol):
    """A ``bentoml.models.BentoModel`` class attribute: a tag, and the stored model if there is one."""

    @property
    def tag(self) -> object: ...

    @property
    def stored(self) -> StoredModel | None: ...


@dataclass(frozen=True, kw_only=True)
class StoredModelRef:
    """A model resolved in the store: its full tag and directory."""

    role: str
    tag: str
    path: Path


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """Everything a worker needs to answer requests."""

    pipeline: GuardedClassifier
    guard: Guard  # the pipeline's guard, typed as itself (admin actions: reload, reset, check)
    policy_path: Path
    policy_version: str
    models: tuple[ModelInfo, ...]
    load_seconds: float
    audit: AuditTrail | None = None  # None when FAIRGATE_AUDIT_DB=off
    window_scope: str = "worker"  # "fleet" when FAIRGATE_REDIS_URL shares the windows


def build_window_store(
    *, settings: ServiceSettings, policy_version: str
) -> tuple[WindowStore | MonitorStore, Callable[[], float]]:
    """The rate monitors' store and the clock to stamp outcomes with.

    Without ``FAIRGATE_REDIS_URL``: this worker's own windows on the monotonic clock. With
    it: Redis for the whole fleet behind a failover to local windows, on wall-clock time
    (shared by machines; keep them NTP-synced well within a time bucket). Redis being down
    at start is not an error: the first batches fail over and it is retried with backoff.
    """
    from fairgate.guardrails.store import InMemoryWindowStore, StoreError

    if settings.redis_url is None:
        return InMemoryWindowStore(), time.monotonic
    from fairgate.guardrails.failover import Backoff, FailoverStore
    from fairgate.guardrails.redis_store import RedisWindowStore, mask_url

    primary = RedisWindowStore.from_url(
        settings.redis_url,
        policy_version=policy_version,
        timeout_s=settings.redis_timeout_ms / 1000.0,
        prefix=settings.redis_prefix,
        key_ttl_s=settings.redis_key_ttl_s,
    )
    backoff = Backoff(base_s=min(0.1, settings.redis_backoff_max_s), max_s=settings.redis_backoff_max_s)
    store = FailoverStore(primary=primary, backoff=backoff)
    shown = mask_url(settings.redis_url)
    try:
        primary.ping()
    except StoreError as error:
        logger.warning(
            "Redis at %s (FAIRGATE_REDIS_URL) does not answer at start (%s): rate monitors fall back to this "
            "worker's windows until it does",
            shown,
            error,
        )
    else:
        logger.info("rate windows and alerts shared in Redis at %s (window_scope fleet)", shown)
    return store, time.time


def resolve_stored_model(reference: ModelReference, *, role: str, env_var: str) -> StoredModelRef:
    """Find a ``bentoml.models.BentoModel`` reference in the *local* store.

    ``BentoModel.resolve()`` would try BentoCloud when the tag is missing; offline that is
    a slow, confusing failure, so look locally and name the command that builds it.
    """
    stored = reference.stored
    if stored is None:
        raise ModelNotFoundError(
            f"{role} model {str(reference.tag)!r} is not in the BentoML store; build it with "
            f"`{_BUILD_HINT.get(role, 'fairgate build ...')}` (or `make models`), "
            f"or point {env_var} at a tag listed by `bentoml models list`"
        )
    return StoredModelRef(role=role, tag=str(stored.tag), path=Path(stored.path))


def load_runtime(
    *,
    settings: FairgateSettings,
    classifier: StoredModelRef,
    guard: StoredModelRef,
    registry: CollectorRegistry,
) -> Runtime:
    """Load the models, the policy and the guard; raise with a message naming the fix.

    Reads ``settings.service`` (models, policy, threads, Redis, faults), ``settings.limits``
    (the scorer deadline) and ``settings.audit``.
    """
    from fairgate.guardrails.deadline import with_deadline
    from fairgate.guardrails.guard import Guard
    from fairgate.guardrails.onnx_model import OnnxTextModel
    from fairgate.guardrails.policy import default_policy_path, load_policy
    from fairgate.guardrails.probe_runner import BackgroundProbe
    from fairgate.guardrails.scorers import OnnxToxicityScorer
    from fairgate.service._faults import apply_faults
    from fairgate.service._pipeline import GuardedClassifier
    from fairgate.service.audit import AuditTrail, open_audit_store

    started = time.perf_counter()
    service, audit = settings.service, settings.audit
    policy_path = service.policy if service.policy is not None else default_policy_path()
    policy = load_policy(policy_path)
    threads = service.threads_per_session()
    guard_threads = service.guard_threads_per_session()
    variant = service.onnx_variant
    classifier_model = OnnxTextModel.from_directory(
        classifier.path, variant=variant, intra_op_threads=threads, bucket_size=service.bucket_size
    )
    if classifier_model.task != "single_label_classification":
        raise ValueError(
            f"{classifier.tag} is a {classifier_model.task} model; FAIRGATE_CLASSIFIER_TAG must name "
            "a single-label classifier such as fairgate-classifier"
        )
    domain, domain_off = classifier_model.domain_reference()
    if domain_off is not None:  # the one line saying why the domain-shift monitor is off
        logger.warning("domain-shift monitor off for %s: %s", classifier.tag, domain_off)
    guard_model = OnnxTextModel.from_directory(
        guard.path,
        variant=variant,
        intra_op_threads=guard_threads,
        bucket_size=service.bucket_size,
    )
    scorer: ToxicityScorer = OnnxToxicityScorer(model=guard_model)
    # Explanations occlude with the same model but never through the deadline below: an
    # occlusion batch costs ~30 screens and would count as a monitor error (docs/service.md).
    explain_scorer: ToxicityScorer = scorer
    if service.faults:  # FAIRGATE_FAULTS, tests only: never set in production
        scorer, classifier_model = apply_faults(service.faults, scorer=scorer, classifier=classifier_model)
    # A hung scorer becomes a monitor error that toxicity.on_error decides.
    scorer = with_deadline(scorer, timeout_s=settings.limits.scorer_timeout_s)
    store, clock = build_window_store(settings=service, policy_version=policy.version)
    the_guard = Guard(
        policy=policy,
        scorer=scorer,
        registry=registry,
        clock=clock,
        store=store,
        domain=domain,
        domain_unavailable=domain_off or "",
    )
    # The counterfactual probe measures after the answer, on a low-priority thread
    # (guardrails/probe_runner.py): inline it held up every request queued behind its batch.
    probe_runner = None
    if service.probe_queue_batches > 0:
        probe_runner = BackgroundProbe(
            max_batches=service.probe_queue_batches, on_dropped=the_guard.metrics.counterfactual_dropped.inc
        )
    # The classifier runs beside the guard's screen (FAIRGATE_OVERLAP_MODELS; GuardedClassifier).
    classifier_runner = None
    if service.overlaps():
        classifier_runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fairgate-classifier")
    pipeline = GuardedClassifier(
        classifier=classifier_model,
        guard=the_guard,
        guard_model=guard_model,
        explain_scorer=explain_scorer,
        probe_runner=probe_runner,
        classifier_runner=classifier_runner,
    )
    the_guard.metrics.set_model_info(role="classifier", tag=classifier.tag, variant=variant)
    the_guard.metrics.set_model_info(role="guard", tag=guard.tag, variant=variant)
    models = (
        ModelInfo(
            role="classifier",
            tag=classifier.tag,
            variant=variant,
            task=classifier_model.task,
            labels=list(classifier_model.labels),
        ),
        ModelInfo(
            role="guard", tag=guard.tag, variant=variant, task=guard_model.task, labels=list(guard_model.labels)
        ),
    )
    trail = None
    if audit.enabled:
        trail = AuditTrail(
            store=open_audit_store(audit.location(), synchronous=audit.synchronous),
            policy_version=policy.version,
            models={"classifier": classifier.tag, "guard": guard.tag},
            store_text=audit.store_text or policy.audit.store_text,
        )
        logger.info("audit trail: %s (raw text %s)", trail.store, "stored" if trail.store_text else "not stored")
    else:
        logger.warning("audit trail disabled (FAIRGATE_AUDIT_DB=off): flag/block decisions are not recorded")
    elapsed = time.perf_counter() - started
    logger.info(
        "fairgate ready in %.2fs: classifier %s, guard %s (%s, ONNX threads: classifier %d, guard %d), "
        "policy %s version %s, "
        "shared tokenization %s, models overlapped %s",
        elapsed,
        classifier.tag,
        guard.tag,
        variant,
        threads,
        guard_threads,
        policy_path,
        policy.version,
        pipeline.share_encoding,
        classifier_runner is not None,
    )
    return Runtime(
        pipeline=pipeline,
        guard=the_guard,
        policy_path=Path(policy_path),
        policy_version=policy.version,
        models=models,
        load_seconds=elapsed,
        audit=trail,
        window_scope=the_guard.window_scope,
    )
