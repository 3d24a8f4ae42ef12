"""The service's answers as typed objects, for callers of :mod:`fairgate.client`.

These mirror ``fairgate.service.schemas`` (``ClassifyResult``, ``GuardrailsStatusResponse``)
and ``fairgate.guardrails.decision`` (``Reason``, ``GuardStatus``) field for field, but are
defined here: importing the service's own models would pull BentoML (and the guardrails'
ONNX Runtime) into every program that only wants to call the API. A unit test
(tests/unit/client/test_client_models_match_service.py) feeds the service's JSON through
these models and compares the fields, so the two cannot drift apart silently.

Unknown fields are ignored rather than refused: a newer server may add a field, and an
older client should keep working.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Action",
    "ClassifyItem",
    "ClassifyResult",
    "CounterfactualKindStatus",
    "CounterfactualModelStatus",
    "CounterfactualStatus",
    "DomainStatus",
    "ExplainedLabel",
    "ExplainedWord",
    "GroupCount",
    "GroupStatus",
    "GuardStatus",
    "GuardrailsStatus",
    "ItemExplanation",
    "ModelInfo",
    "MonitorStatus",
    "Reason",
    "WorkerInfo",
]

Action = Literal["allow", "flag", "block"]


class _Answer(BaseModel):
    """Base of every model the server sends: frozen, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class ClassifyItem(BaseModel):
    """One text to classify and, optionally, the caller's group for the per-group monitors.

    The server enforces the limits (text length, group name): they are configurable there,
    so the client does not guess them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    group: str | None = None
    explain: bool = False


class Reason(_Answer):
    """Why an item was flagged or blocked: which monitor, on what figure, against what bound."""

    monitor: str
    stage: Literal["input", "output", "review"]
    code: str = Field(description="toxicity_<category>, rate_<monitor> or monitor_error")
    action: Action
    category: str | None = None
    group: str | None = None
    value: float | None = None
    threshold: float | None = None
    message: str


class ExplainedWord(_Answer):
    """One word of the text: ``text[start:end] == word`` (code point offsets, Python ``str`` indices)."""

    start: int
    end: int
    word: str
    contribution: float = Field(description="the label's score minus its score with this word removed")


class ExplainedLabel(_Answer):
    """The top words of one label: a toxicity category of the guard, or the classifier's label."""

    model: Literal["guard", "classifier"]
    label: str
    score: float
    masked_score: float
    action: Action | None = None
    words: list[ExplainedWord]


class ItemExplanation(_Answer):
    """Which words made the decision (an item sent with ``explain=True``); never changes it."""

    words_total: int
    words_occluded: int
    truncated: bool
    labels: list[ExplainedLabel]
    error: str | None = None


class ClassifyResult(_Answer):
    """The decision for one item; a blocked item has no label and empty scores."""

    request_id: str
    label: str | None
    scores: dict[str, float]
    action: Action
    reasons: list[Reason]
    toxicity: dict[str, float]
    groups: list[str]
    domain_score: float | None = Field(
        default=None,
        description="distance from the classifier's training domain over the build-time quantile (above 1: "
        "out of domain); None when blocked, the domain monitor is off, or the server predates it",
    )
    explanation: ItemExplanation | None = None

    @property
    def blocked(self) -> bool:
        """True when the guard stopped the item (``label`` is then None)."""
        return self.action == "block"

    @property
    def flagged(self) -> bool:
        """True when the item was answered but marked for review."""
        return self.action == "flag"


class WorkerInfo(_Answer):
    """Which worker process answered (without Redis each worker has its own windows)."""

    pid: int
    index: int | None
    workers: int


class ModelInfo(_Answer):
    role: Literal["classifier", "guard"]
    tag: str
    variant: Literal["int8", "fp32"]
    task: str
    labels: list[str]


class GroupStatus(_Answer):
    """One group in one rate monitor; ``None`` figures cannot be computed yet (never a silent 0)."""

    group: str
    n: int
    positives: int
    rate: float | None
    impact_ratio: float | None
    ratio_upper: float | None
    parity_difference: float | None
    status: str
    alert: bool
    evidence: float | None = None  # rates.method sequential: e-detector / threshold (alert at >= 1)
    evidence_against: str | None = None


class MonitorStatus(_Answer):
    name: str
    source: str
    outcome: str
    harm: str
    method: Literal["window", "sequential"] = "window"
    reference: str | None
    alerts_raised: int
    checks: int = 0
    active: list[str]
    checked: bool
    groups: list[GroupStatus]


class CounterfactualModelStatus(_Answer):
    """One model in one kind of the counterfactual probe; ``None`` figures: nothing probed yet."""

    model: Literal["guard", "classifier"]
    probes: int
    variants: int
    mean_gap: float | None
    max_gap: float | None
    flips: int
    flip_rate: float | None


class GroupCount(_Answer):
    group: str
    count: int


class CounterfactualKindStatus(_Answer):
    kind: str
    items: int
    skipped: int
    models: list[CounterfactualModelStatus]
    unfavoured: list[GroupCount]


class CounterfactualStatus(_Answer):
    """The live counterfactual probe of the worker that answered (policy ``counterfactual``)."""

    enabled: bool
    sample: float
    max_variants_per_batch: int
    sampled: int
    errors: int
    pending: int = 0
    dropped: int = 0
    kinds: list[CounterfactualKindStatus]


class DomainStatus(_Answer):
    """The domain-shift monitor of the worker that answered (policy ``domain``); ``None``: not computable yet."""

    enabled: bool
    reason: str | None = None
    quantile: float
    threshold: float | None = None
    expected: float | None = None
    n: int = 0
    out_of_domain: int = 0
    share: float | None = None
    share_lower: float | None = None
    status: str = "not_checked"
    alert: bool = False
    alerts_raised: int = 0
    checks: int = 0
    action: Literal["none", "flag"] = "none"


class GuardStatus(_Answer):
    policy_version: str
    enabled: bool
    toxicity_enabled: bool
    rates_enabled: bool
    window_scope: Literal["worker", "fleet"] = "worker"
    degraded: bool = False
    monitors: list[MonitorStatus]
    counterfactual: CounterfactualStatus | None = None
    domain: DomainStatus | None = None


class GuardrailsStatus(_Answer):
    """``GET /guardrails/status``: the live view of the guardrails in the worker that answered."""

    ready: bool
    error: str | None = None
    worker: WorkerInfo
    window_scope: Literal["worker", "fleet"] = "worker"
    degraded: bool = False
    policy_path: str | None = None
    policy_version: str | None = None
    models: list[ModelInfo] = Field(default_factory=list)
    shared_tokenization: bool | None = None
    guardrails: GuardStatus | None = None
