"""The typed results of the guard: per-item screens and decisions, and the status report.

These are the shapes the service returns and audits, so they are pydantic models with
bounded vocabularies (``action``, ``code``) and no raw request text.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The vocabularies live in fairgate.guardrails.contracts; re-exported here, where they were defined before.
from fairgate.guardrails.contracts import SEVERITY as SEVERITY
from fairgate.guardrails.contracts import Action as Action
from fairgate.guardrails.contracts import ScreenStage as ScreenStage
from fairgate.guardrails.contracts import Stage as Stage
from fairgate.guardrails.contracts import most_severe as most_severe


class Reason(BaseModel):
    """Why an item was flagged or blocked: which monitor, on what figure, against what bound.

    ``code`` is the bounded value used as the ``reason`` metric label:
    ``toxicity_<category>``, ``rate_<monitor>`` or ``monitor_error``.
    """

    model_config = ConfigDict(frozen=True)

    monitor: str
    stage: Stage
    code: str
    action: Action
    category: str | None = None
    group: str | None = None
    value: float | None = None
    threshold: float | None = None
    message: str


class Screen(BaseModel):
    """The guard's view of one item before inference: its groups, toxicity and a provisional action."""

    model_config = ConfigDict(frozen=True)

    stage: ScreenStage = "input"
    action: Action = "allow"
    reasons: tuple[Reason, ...] = ()
    toxicity: dict[str, float] = Field(default_factory=dict)
    groups: tuple[str, ...] = ("none",)

    @property
    def blocked(self) -> bool:
        """True when the item must not reach the model (skip inference, pass label None)."""
        return self.action == "block"


class Decision(BaseModel):
    """The final decision for one item."""

    model_config = ConfigDict(frozen=True)

    action: Action
    reasons: tuple[Reason, ...] = ()
    toxicity: dict[str, float] = Field(default_factory=dict)
    groups: tuple[str, ...] = ("none",)
    label: str | None = None
    domain_score: float | None = Field(
        default=None,
        description="distance of the item from the model's training domain over the build-time quantile "
        "(above 1: out of domain); None when not classified or the domain monitor is off",
    )

    @property
    def reason_code(self) -> str:
        """The primary reason (first reason of the decisive action), or ``none``."""
        for reason in self.reasons:
            if reason.action == self.action:
                return reason.code
        return "none"


class GroupStatus(BaseModel):
    """One group in one rate monitor. ``None`` figures cannot be computed yet (never a silent 0)."""

    group: str
    n: int
    positives: int
    rate: float | None
    impact_ratio: float | None
    ratio_upper: float | None
    parity_difference: float | None
    status: str
    alert: bool
    evidence: float | None = Field(
        default=None,
        description="rates.method sequential: the e-detector over its alarm threshold at the last check "
        "(an alert is raised at >= 1); None with method window",
    )
    evidence_against: str | None = Field(
        default=None, description="sequential: the group this group's strongest evidence compares it with"
    )


class MonitorStatus(BaseModel):
    """One rate monitor: current windows, and the alert board as of the last check.

    With a shared store (``window_scope: fleet``) every field is the fleet's: the same
    from every worker and replica.
    """

    name: str
    source: str
    outcome: str
    harm: str
    method: Literal["window", "sequential"] = Field(
        default="window", description="rates.method: what raises an alert (docs/guardrails.md)"
    )
    reference: str | None
    alerts_raised: int = Field(description="alerts raised over the board's life")
    checks: int = Field(default=0, description="checks published so far")
    active: list[str]
    checked: bool
    groups: list[GroupStatus]


class CounterfactualModelStatus(BaseModel):
    """One model (guard or classifier) in one kind of the counterfactual probe. ``None``: nothing probed yet."""

    model: Literal["guard", "classifier"]
    probes: int = Field(description="items probed on this model")
    variants: int = Field(description="group-swapped variants scored")
    mean_gap: float | None = Field(description="mean of max - min score over each item's text and variants")
    max_gap: float | None
    flips: int = Field(description="variants whose guard action or classifier label differs from the original's")
    flip_rate: float | None = Field(description="flips / variants")


class GroupCount(BaseModel):
    group: str
    count: int


class CounterfactualKindStatus(BaseModel):
    """One kind (a lexicon axis) of the counterfactual probe, in this process since it started."""

    kind: str
    items: int = Field(description="items probed for this kind")
    skipped: int = Field(description="sampled items naming this kind left out by max_variants_per_batch")
    models: list[CounterfactualModelStatus]
    unfavoured: list[GroupCount] = Field(
        description="groups whose version of a text the guard scored most toxic, counted when the gap was >= 0.05"
    )


class CounterfactualStatus(BaseModel):
    """The live counterfactual probe (policy section ``counterfactual``) of this worker process."""

    enabled: bool
    sample: float
    max_variants_per_batch: int
    sampled: int = Field(description="items drawn by the sample (probed when their text names a group)")
    errors: int = Field(description="probes that failed (logged; decisions are never affected)")
    pending: int = Field(
        default=0,
        description="decided batches waiting for the background probe (the service probes off the request path)",
    )
    dropped: int = Field(
        default=0,
        description="decided batches left unprobed because the background probe's queue was full "
        "(since the worker started; the probe only uses time the requests leave)",
    )
    kinds: list[CounterfactualKindStatus]


class DomainStatus(BaseModel):
    """The domain-shift monitor (policy section ``domain``) of this worker process.

    ``share`` is the window's share of items scoring above the build-time ``quantile`` of
    in-domain validation scores; ``expected`` is the bound it is tested against (the
    validation share's upper confidence limit). ``None`` figures: not computable yet.
    """

    enabled: bool
    reason: str | None = Field(default=None, description="why the monitor is off (None when on)")
    quantile: float
    threshold: float | None = Field(default=None, description="the Mahalanobis distance at the quantile")
    expected: float | None = None
    n: int = 0
    out_of_domain: int = 0
    share: float | None = None
    share_lower: float | None = Field(default=None, description="lower confidence limit of share at the last check")
    status: str = Field(default="not_checked", description="ok | alert | insufficient_samples | not_checked | off")
    alert: bool = False
    alerts_raised: int = 0
    checks: int = 0
    action: Literal["none", "flag"] = "none"


class GuardStatus(BaseModel):
    policy_version: str
    enabled: bool
    toxicity_enabled: bool
    rates_enabled: bool
    window_scope: Literal["worker", "fleet"] = Field(
        default="worker",
        description="worker: windows and alerts of this process; fleet: shared by every worker and replica",
    )
    degraded: bool = Field(
        default=False,
        description="the shared store is unavailable: figures are this worker's own windows (rates.on_error applies)",
    )
    monitors: list[MonitorStatus]
    counterfactual: CounterfactualStatus | None = Field(
        default=None, description="the counterfactual probe's figures in this worker (None: not reported)"
    )
    domain: DomainStatus | None = Field(
        default=None, description="the domain-shift monitor in this worker (None: not reported)"
    )
