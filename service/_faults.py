"""Fault injection for the reliability tests: wrap the scorer or the classifier in failing ones.

Enabled only by ``FAIRGATE_FAULTS`` (e.g. ``scorer=raise``, ``scorer=sleep:3``,
``classifier=raise``), read once when a worker loads its models. Unset, nothing is
wrapped, so production requests never pass through this module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import numpy as np

    from fairgate.guardrails.onnx_model import OnnxTextModel
    from fairgate.guardrails.scorers import ToxicityScorer

__all__ = ["FaultSpec", "InjectedFault", "apply_faults", "parse_faults"]

logger = logging.getLogger(__name__)

FaultSpec = dict[str, tuple[str, float]]
_TARGETS = ("scorer", "classifier")


class InjectedFault(RuntimeError):
    """Raised by a component that FAIRGATE_FAULTS told to fail."""


def parse_faults(value: str | None) -> FaultSpec:
    """``"scorer=sleep:2,classifier=raise"`` -> ``{"scorer": ("sleep", 2.0), "classifier": ("raise", 0.0)}``."""
    faults: FaultSpec = {}
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        target, _, mode = part.partition("=")
        kind, _, arg = mode.partition(":")
        if target not in _TARGETS or kind not in ("raise", "sleep") or (kind == "sleep" and not arg):
            raise ValueError(
                f"FAIRGATE_FAULTS={value!r}: cannot read {part!r}; use scorer=raise, scorer=sleep:SECONDS "
                "or classifier=raise, comma-separated"
            )
        faults[target] = (kind, float(arg) if arg else 0.0)
    return faults


class _FaultyScorer:
    def __init__(self, scorer: ToxicityScorer, kind: str, seconds: float) -> None:
        self._scorer, self._kind, self._seconds = scorer, kind, seconds

    @property
    def categories(self) -> Sequence[str]:
        return self._scorer.categories

    def score(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        if self._kind == "sleep":
            time.sleep(self._seconds)
            return self._scorer.score(texts, **kwargs)
        raise InjectedFault("injected scorer fault (FAIRGATE_FAULTS)")


class _FaultyClassifier:
    def __init__(self, model: OnnxTextModel) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def run(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise InjectedFault("injected classifier fault (FAIRGATE_FAULTS)")

    def run_outputs(self, *args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray | None]:
        # The pipeline reads logits and embeddings in one run: it must fail the same way.
        raise InjectedFault("injected classifier fault (FAIRGATE_FAULTS)")


def apply_faults(
    faults: FaultSpec, *, scorer: ToxicityScorer, classifier: OnnxTextModel
) -> tuple[ToxicityScorer, OnnxTextModel]:
    """The scorer and classifier, wrapped where ``faults`` says; unchanged when it is empty."""
    if "scorer" in faults:
        kind, seconds = faults["scorer"]
        logger.warning("FAIRGATE_FAULTS: the toxicity scorer will %s", kind)
        scorer = _FaultyScorer(scorer, kind, seconds)
    if "classifier" in faults:
        logger.warning("FAIRGATE_FAULTS: the classifier will raise")
        # Stands in for the model: every attribute but run() is the model's (__getattr__).
        classifier = cast("OnnxTextModel", _FaultyClassifier(classifier))
    return scorer, classifier
