"""What a policy change keeps and what it starts anew: the rules :meth:`Guard.apply_policy` follows.

A rate monitor's windows are evidence collected under one definition of the monitor: what
it counts (its entry in ``rates.monitors``), how it tests (window, bounds, confidence,
minimum samples, hysteresis, exclusions, reference) and over which groups. A reload that
leaves that definition alone (say it only moves a toxicity threshold, or the rate action
from flag to block) keeps the windows; one that changes it starts the monitor's windows
empty, because counts gathered under another definition would be judged by the wrong rule.

Emptying windows needs a store that can forget keys (:class:`ForgettingStore`); every store
of the package can.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from fairgate.guardrails.policy import Policy
from fairgate.guardrails.store import WindowSpec

__all__ = ["ForgettingStore", "PolicyChange", "forget_windows", "monitor_definition"]

# Rate settings the guard applies to a monitor's result, not the monitor itself: changing
# them does not change what the windows mean.
_DECISION_ONLY = frozenset({"monitors", "action", "scope", "on_error", "enabled", "label"})


@dataclass(frozen=True, kw_only=True)
class PolicyChange:
    """What one policy swap did, for the response, the log and the audit trail."""

    old_version: str
    new_version: str
    kept: tuple[str, ...]  # monitors whose windows were kept
    reset: tuple[str, ...]  # monitors that start with empty windows (new or changed)
    removed: tuple[str, ...]  # monitors the new policy no longer has


def monitor_definition(policy: Policy, name: str) -> dict[str, Any] | None:
    """Everything that gives monitor ``name``'s windows their meaning under ``policy``; None if absent."""
    for monitor in policy.rates.monitors:
        if monitor.name == name:
            return {
                "monitor": monitor.model_dump(mode="json"),
                "rates": policy.rates.model_dump(mode="json", exclude=set(_DECISION_ONLY)),
                "groups": list(policy.label_values),
            }
    return None


@runtime_checkable
class ForgettingStore(Protocol):
    """A window store that can empty some windows (admin resets, policy changes)."""

    def forget(self, keys: Sequence[str], *, spec: WindowSpec) -> None:
        """Empty the windows of ``keys`` (``monitor/group``) of shape ``spec``."""
        ...


def forget_windows(store: object, keys: Sequence[str], *, spec: WindowSpec) -> None:
    """Empty ``keys`` in ``store``; :class:`TypeError` naming the fix if the store cannot."""
    if not isinstance(store, ForgettingStore):
        raise TypeError(
            f"{type(store).__name__} cannot forget windows; give it a forget(keys, *, spec) method "
            "(see fairgate.guardrails.reload.ForgettingStore)"
        )
    store.forget(keys, spec=spec)
