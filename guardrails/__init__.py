"""fairgate guardrails: toxicity and per-group output-rate monitors behind one policy.

Embeddable without BentoML, torch or a server: ONNX Runtime, numpy, tokenizers, pydantic,
PyYAML and prometheus-client only. Nothing here runs at import time; heavy or optional
dependencies (detoxify/torch for :class:`DetoxifyScorer`) are imported where used.
"""

from fairgate.guardrails.deadline import ScorerDeadline, ScorerTimeoutError, with_deadline
from fairgate.guardrails.decision import (
    CounterfactualStatus,
    Decision,
    DomainStatus,
    GroupStatus,
    GuardStatus,
    MonitorStatus,
    Reason,
    Screen,
)
from fairgate.guardrails.domain import DomainReference, DomainStatsError
from fairgate.guardrails.domain_monitor import DomainMonitor
from fairgate.guardrails.groups import GroupResolver, Lexicon
from fairgate.guardrails.guard import Guard
from fairgate.guardrails.identity import (
    Counterfactual,
    CounterfactualSwapper,
    LexiconError,
    Mention,
    UnknownGroupError,
)
from fairgate.guardrails.metrics import GuardMetrics
from fairgate.guardrails.normalize import NormalizationError, TextNormalization
from fairgate.guardrails.onnx_model import Encoding, ModelDirectoryError, OnnxTextModel, can_share_encoding
from fairgate.guardrails.policy import Policy, PolicyError, default_policy_path
from fairgate.guardrails.probe import CounterfactualProbe, ProbeClassifier, ProbeRecord
from fairgate.guardrails.rates import RateMonitor
from fairgate.guardrails.reload import PolicyChange
from fairgate.guardrails.scorers import DetoxifyScorer, OnnxToxicityScorer, ToxicityScorer
from fairgate.guardrails.simulate import SimulationResult, simulate_rates
from fairgate.guardrails.store import InMemoryWindowStore, WindowCounts, WindowSpec, WindowStore

__all__ = [
    "Counterfactual",
    "CounterfactualSwapper",
    "Decision",
    "DetoxifyScorer",
    "Encoding",
    "GroupResolver",
    "GroupStatus",
    "Guard",
    "GuardMetrics",
    "GuardStatus",
    "InMemoryWindowStore",
    "Lexicon",
    "LexiconError",
    "Mention",
    "ModelDirectoryError",
    "MonitorStatus",
    "NormalizationError",
    "OnnxTextModel",
    "OnnxToxicityScorer",
    "Policy",
    "PolicyChange",
    "PolicyError",
    "RateMonitor",
    "Reason",
    "ScorerDeadline",
    "ScorerTimeoutError",
    "Screen",
    "SimulationResult",
    "TextNormalization",
    "ToxicityScorer",
    "UnknownGroupError",
    "WindowCounts",
    "WindowSpec",
    "WindowStore",
    "can_share_encoding",
    "default_policy_path",
    "simulate_rates",
    "with_deadline",
]

# Shared (fleet-wide) windows: docs/fleet.md. Appended here to keep edits to this file small.
from fairgate.guardrails.failover import Backoff, FailoverStore
from fairgate.guardrails.local_store import LocalMonitorStore
from fairgate.guardrails.redis_store import RedisWindowStore
from fairgate.guardrails.store import MonitorStore, StoreError

__all__ += ["Backoff", "FailoverStore", "LocalMonitorStore", "MonitorStore", "RedisWindowStore", "StoreError"]
# The live counterfactual probe: guardrails/probe.py, docs/guardrails.md.
__all__ += ["CounterfactualProbe", "CounterfactualStatus", "ProbeClassifier", "ProbeRecord"]
# The domain-shift monitor: guardrails/domain.py (reference statistics, score), domain_monitor.py.
__all__ += ["DomainMonitor", "DomainReference", "DomainStatsError", "DomainStatus"]
