"""The guardrails policy: one YAML file, validated once into one typed object.

Every mistake surfaces as a :class:`PolicyError` whose message names the key, the bad
value and the fix, because a policy is edited by people under pressure (an incident,
an audit) and "validation error" helps nobody.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Re-exported: callers import TOXICITY_CATEGORIES from here too (the one definition is in contracts).
from fairgate.guardrails.contracts import TOXICITY_CATEGORIES as TOXICITY_CATEGORIES
from fairgate.guardrails.contracts import Action as Action

RESERVED_GROUPS: tuple[str, ...] = ("other", "none")
# The built-in monitors' names in metrics and reasons; a rate monitor may not take one.
RESERVED_MONITORS: tuple[str, ...] = ("toxicity", "counterfactual", "domain")
GUARD_OUTCOMES: tuple[str, ...] = ("flag", "block")


class PolicyError(ValueError):
    """The policy file is invalid; the message names the key, the value and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GroupsPolicy(_Strict):
    """Where an item's groups come from, and which group names may appear in metrics."""

    source: Literal["request", "identity_terms", "both"] = "request"
    allowed: tuple[str, ...] = ("female", "male", "nonbinary")
    lexicon: str | None = Field(
        default=None, description="path to an identity-term lexicon; None uses the bundled one"
    )

    @field_validator("allowed")
    @classmethod
    def _allowed_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(v.strip().lower() for v in value)
        for name in cleaned:
            if name in RESERVED_GROUPS:
                raise ValueError(
                    f"{name!r} is reserved (items outside the list count as 'other', items "
                    "without a group as 'none'); remove it from groups.allowed"
                )
            if not name or not name.replace("_", "").isalnum():
                raise ValueError(f"{name!r} is not a valid group name; use lowercase letters, digits and '_'")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("lists a group twice; list each group once")
        return cleaned


class Thresholds(_Strict):
    """Scores at or above ``flag`` flag the item, at or above ``block`` block it."""

    flag: float | None = Field(default=None, ge=0.0, le=1.0)
    block: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.flag is None and self.block is None:
            raise ValueError("needs at least one of flag or block; set e.g. {flag: 0.5, block: 0.8}")
        if self.flag is not None and self.block is not None and self.flag > self.block:
            raise ValueError(f"flag {self.flag} is above block {self.block}; set flag <= block")
        return self


class ToxicityPolicy(_Strict):
    enabled: bool = True
    categories: dict[str, Thresholds] = Field(
        default_factory=lambda: {
            # As the bundled default policy: the specific harms block, the rest flag.
            "toxicity": Thresholds(flag=0.5),
            "severe_toxicity": Thresholds(flag=0.3, block=0.6),
            "threat": Thresholds(flag=0.5, block=0.8),
            "identity_attack": Thresholds(flag=0.5, block=0.8),
            "insult": Thresholds(flag=0.6),
            "obscene": Thresholds(flag=0.7),
        }
    )
    on_error: Action = "flag"
    stages: tuple[Literal["input", "output"], ...] = ("input", "output")

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, value: dict[str, Thresholds]) -> dict[str, Thresholds]:
        for name in value:
            if name not in TOXICITY_CATEGORIES:
                raise ValueError(f"unknown category {name!r}; use one of {', '.join(TOXICITY_CATEGORIES)}")
        return value


class WindowPolicy(_Strict):
    """A sliding window per group: the last ``size`` outcomes, those of the last ``seconds``,
    or both (the last ``size`` that are at most ``seconds`` old)."""

    size: int | None = Field(default=None, ge=1)
    seconds: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_bound(self) -> WindowPolicy:
        if self.size is None and self.seconds is None:
            raise ValueError("needs size (outcomes) or seconds; set e.g. {size: 2000} or {seconds: 3600}")
        return self


class ImpactRatioBound(_Strict):
    min: float = Field(default=0.8, gt=0.0, le=1.0)


class ParityDifferenceBound(_Strict):
    max: float = Field(gt=0.0, lt=1.0)


class SequentialPolicy(_Strict):
    """Settings of ``rates.method: sequential`` (guardrails/sequential.py, docs/guardrails.md).

    ``arl`` is the long-run false-alarm budget: while no compared pair breaches the bounds,
    the expected number of false alarms among the first ``n`` monitored outcomes is at most
    ``(1 - confidence) + n / arl``. ``start_every`` is how often (in paired comparisons of
    two groups) a new e-process starts: smaller reacts sooner to a late change, larger
    lowers the alarm threshold.
    """

    arl: float = Field(default=40_000, ge=100, description="monitored outcomes per false alarm, at least, on average")
    start_every: int = Field(default=100, ge=1, description="paired comparisons between new e-process starts")

    @model_validator(mode="after")
    def _budget(self) -> SequentialPolicy:
        if self.arl < self.start_every:
            raise ValueError(
                f"arl {self.arl:g} is below start_every {self.start_every}; raise arl or lower start_every"
            )
        return self


class RateMonitorPolicy(_Strict):
    """One monitored outcome: a classifier label, or the guard's own flag/block action.

    ``harm`` says which side of the comparison is the disadvantaged group: ``low_rate``
    for a favourable outcome (a group rarely gets it), ``high_rate`` for an adverse one
    (a group gets it too often, like a block).
    """

    name: str
    source: Literal["label", "guard"] = "label"
    outcome: str
    harm: Literal["low_rate", "high_rate"] = "high_rate"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or not value.replace("_", "").isalnum() or value.lower() != value:
            raise ValueError(f"{value!r} is not a valid monitor name; use lowercase letters, digits and '_'")
        if value in RESERVED_MONITORS:
            raise ValueError(
                f"monitor name {value!r} is reserved for the built-in {value} monitor (its metrics and "
                "reasons share the name); choose another"
            )
        return value

    @model_validator(mode="after")
    def _guard_outcome(self) -> RateMonitorPolicy:
        if self.source == "guard" and self.outcome not in GUARD_OUTCOMES:
            raise ValueError(
                f"outcome {self.outcome!r} is not a guard action; with source: guard use flag or block"
            )
        return self


def _default_monitors() -> tuple[RateMonitorPolicy, ...]:
    return (
        RateMonitorPolicy(name="negative", source="label", outcome="negative", harm="high_rate"),
        RateMonitorPolicy(name="guard_flag", source="guard", outcome="flag", harm="high_rate"),
        RateMonitorPolicy(name="guard_block", source="guard", outcome="block", harm="high_rate"),
    )


class RatesPolicy(_Strict):
    enabled: bool = True
    label: str | None = Field(
        default=None,
        description="shorthand (the design sketch's form): monitor this adverse classifier label "
        "plus the guard's own flag and block actions",
    )
    monitors: tuple[RateMonitorPolicy, ...] = Field(default_factory=_default_monitors)
    window: WindowPolicy = Field(default_factory=lambda: WindowPolicy(size=2000))
    impact_ratio: ImpactRatioBound | None = Field(default_factory=ImpactRatioBound)
    parity_difference: ParityDifferenceBound | None = None
    reference: str = Field(default="highest", description="'highest' (the extreme-rate group) or a group")
    min_samples: int = Field(default=100, ge=1)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    checks_per_window: int = Field(default=20, ge=1)
    hysteresis: float = Field(default=0.05, ge=0.0, lt=1.0)
    action: Literal["flag", "block"] = "flag"
    scope: Literal["affected_group", "all"] = "affected_group"
    on_error: Action = "allow"
    exclude: tuple[str, ...] = ("none",)
    method: Literal["window", "sequential"] = Field(
        default="window",
        description="window: Wilson bounds on sliding windows, checked on a schedule; sequential: "
        "e-detectors updated every batch (anytime-valid, change detection)",
    )
    sequential: SequentialPolicy = Field(default_factory=SequentialPolicy)

    @model_validator(mode="before")
    @classmethod
    def _label_shorthand(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or data.get("label") is None:
            return data
        if "monitors" in data:
            raise ValueError(
                "sets both label and monitors; keep monitors (the full form) or label (the shorthand), not both"
            )
        label = str(data["label"])
        name = "".join(ch if ch.isalnum() else "_" for ch in label.lower()).strip("_") or "label"
        monitors = [
            {"name": name, "source": "label", "outcome": label, "harm": "high_rate"},
            *(
                {"name": m.name, "source": m.source, "outcome": m.outcome, "harm": m.harm}
                for m in _default_monitors()
                if m.source == "guard"
            ),
        ]
        return {**data, "monitors": monitors}

    @model_validator(mode="after")
    def _bounds(self) -> RatesPolicy:
        if self.impact_ratio is None and self.parity_difference is None:
            raise ValueError("has neither impact_ratio nor parity_difference; set impact_ratio: {min: 0.8}")
        names = [m.name for m in self.monitors]
        if len(set(names)) != len(names):
            raise ValueError(f"monitors repeat a name ({', '.join(names)}); give each a unique name")
        return self


class AuditPolicy(_Strict):
    """What a host's audit trail of flagged and blocked decisions keeps.

    The library itself writes no audit records; the service reads this. Raw text is off
    by default because an audit store outlives the request and often leaves the team.
    """

    store_text: bool = Field(
        default=False, description="also store the raw text of flagged and blocked items"
    )


class CounterfactualPolicy(_Strict):
    """The live counterfactual probe (guardrails/probe.py): a measurement, never a decision.

    On by default at a 5% sample: its cost is bounded per batch by
    ``max_variants_per_batch`` (rows scored per model, originals included), and a gap
    that only offline evaluation would show is found too late. ``kinds`` are axes of the
    identity lexicon (checked when the guard is built); None probes every axis that has
    two groups or more.
    """

    enabled: bool = True
    sample: float = Field(default=0.05, ge=0.0, le=1.0, description="share of items drawn for the probe")
    max_variants_per_batch: int = Field(
        default=64, ge=2, le=4096, description="rows scored per model per batch, the original texts included"
    )
    kinds: tuple[str, ...] | None = Field(
        default=None, description="lexicon axes to probe (religion, gender, ...); None: every axis with 2+ groups"
    )

    @field_validator("kinds")
    @classmethod
    def _kind_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        cleaned = tuple(v.strip().lower() for v in value)
        if not cleaned:
            raise ValueError("lists no kind; list lexicon axes (e.g. [religion, gender]) or set enabled: false")
        for name in cleaned:
            if not name or not name.replace("_", "").isalnum():
                raise ValueError(f"{name!r} is not a kind name; use a lexicon axis such as religion or gender")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("lists a kind twice; list each kind once")
        return cleaned


class DomainPolicy(_Strict):
    """The domain-shift monitor (guardrails/domain_monitor.py): is the traffic still the
    fine-tuning domain?

    Each classified item is scored by the Mahalanobis distance of its pooled embedding to
    the nearest class mean (reference statistics stored with the model at build time); an
    item is out of domain above the ``quantile`` of the in-domain validation scores. Over
    ``window`` the share of such items is tested against the share the validation data
    leads us to expect, the way the rate monitors test theirs: an alert is raised when the
    ``confidence`` lower limit of the share clears that bound (at most ``1 - confidence``
    false alarms per window length of in-domain traffic) and cleared when the share falls
    back to it. ``action: flag`` flags the out-of-domain items while the alert is active;
    ``none`` only measures. Models built without the statistics serve with the monitor off.
    """

    enabled: bool = True
    quantile: float = Field(default=0.99, gt=0.5, lt=1.0, description="validation-score quantile of 'out of domain'")
    window: WindowPolicy = Field(default_factory=lambda: WindowPolicy(size=1000))
    min_samples: int = Field(default=200, ge=1, description="items in the window before it is tested")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    checks_per_window: int = Field(default=10, ge=1)
    action: Literal["none", "flag"] = "none"

    @model_validator(mode="after")
    def _testable(self) -> DomainPolicy:
        size = self.window.size
        if size is not None and self.min_samples > size:
            raise ValueError(
                f"domain.min_samples {self.min_samples} exceeds domain.window.size {size}, so the "
                "monitor would never test; lower min_samples or widen the window"
            )
        return self


class Policy(_Strict):
    """The whole policy. Build it with :meth:`from_yaml` or :meth:`from_mapping`."""

    version: str = "0"
    enabled: bool = Field(default=True, description="false turns every monitor off (benchmarks)")
    groups: GroupsPolicy = Field(default_factory=GroupsPolicy)
    toxicity: ToxicityPolicy = Field(default_factory=ToxicityPolicy)
    rates: RatesPolicy = Field(default_factory=RatesPolicy)
    audit: AuditPolicy = Field(default_factory=AuditPolicy)
    counterfactual: CounterfactualPolicy = Field(default_factory=CounterfactualPolicy)
    domain: DomainPolicy = Field(default_factory=DomainPolicy)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) else value

    @model_validator(mode="after")
    def _cross_checks(self) -> Policy:
        reference = self.rates.reference
        if reference != "highest" and reference not in self.groups.allowed:
            raise ValueError(
                f"rates.reference {reference!r} is not in groups.allowed; "
                "use 'highest' or one of the allowed groups"
            )
        return self

    @property
    def label_values(self) -> tuple[str, ...]:
        """Every group value that may appear in metrics: the allowed list plus other, none."""
        return (*self.groups.allowed, *RESERVED_GROUPS)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<policy>") -> Policy:
        """Validate a parsed policy; raise :class:`PolicyError` with one line per problem."""
        if not isinstance(data, Mapping):
            raise PolicyError(
                f"{source}: the policy must be a YAML mapping, got {type(data).__name__}; "
                "start the file with keys like `version:`, `groups:`, `toxicity:`, `rates:`"
            )
        try:
            return cls.model_validate(dict(data))
        except ValidationError as error:
            raise PolicyError(_explain(error, source)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> Policy:
        """Read and validate a policy file."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicyError(
                f"policy file {file} not found; pass an existing file or use Policy.default()"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or "syntax error"
            raise PolicyError(f"{file}: not valid YAML{where} ({problem}); fix the syntax") from None
        return cls.from_mapping(data if data is not None else {}, source=str(file))

    @classmethod
    def default(cls) -> Policy:
        """The documented default policy shipped as ``guardrails/data/default_policy.yaml``."""
        return cls.from_yaml(default_policy_path())


def default_policy_path() -> Path:
    """Path of the bundled default policy file."""
    return Path(str(resources.files("fairgate.guardrails") / "data" / "default_policy.yaml"))


_FIXES: dict[str, str] = {
    "extra_forbidden": "remove it or check its spelling",
    "literal_error": "use one of the values listed",
    "missing": "add it",
    "greater_than_equal": "raise it",
    "greater_than": "raise it",
    "less_than_equal": "lower it",
    "less_than": "lower it",
    "bool_type": "use true or false",
    "bool_parsing": "use true or false",
    "float_type": "use a number",
    "float_parsing": "use a number",
    "int_type": "use a whole number",
    "int_parsing": "use a whole number",
    "int_from_float": "use a whole number",
    "string_type": "use a text value",
    "dict_type": "use a mapping (key: value)",
    "model_type": "use a mapping (key: value)",
    "tuple_type": "use a list",
    "list_type": "use a list",
}


def _explain(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid policy"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"] if not str(part).startswith("function-"))
        kind = item["type"]
        value = item.get("input")
        message = item["msg"]
        if kind == "extra_forbidden":
            lines.append(f"  {key}: unknown key (value {value!r}); remove it or check its spelling")
        elif kind == "missing":
            lines.append(f"  {key}: required key is missing; add it")
        elif kind == "value_error":
            # Our own validators: the message already names the value and the fix.
            message = message.removeprefix("Value error, ")
            lines.append(f"  {key}: {message}" if key else f"  {message}")
        else:
            message = message.replace("Input should", "should")
            fix = _FIXES.get(kind)
            shown = "" if isinstance(value, Mapping) else f" = {value!r}"
            lines.append(f"  {key}{shown}: {message}" + (f"; {fix}" if fix else ""))
    return "\n".join(lines)


def load_policy(path: str | Path | None) -> Policy:
    """The policy at ``path``, or the bundled default when ``path`` is None."""
    return Policy.default() if path is None else Policy.from_yaml(path)
