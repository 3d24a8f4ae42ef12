"""The one home of the vocabularies shared across fairgate's packages (docs/CONTRACTS.md).

Detoxify's six toxicity categories (in the guard's output order), the guard's actions
with their severity order, the stages it screens at, the two model tasks, and the
logits -> probabilities rule every model reader applies, and the comment rule of the
team's one-text-per-line data files. Everything else (``fairgate.guardrails.policy``,
``fairgate.guardrails.decision``, ``fairgate.models.guard``, ``fairgate.models.evaluation``,
the training-data scripts) imports these names from here instead of keeping a copy.

Only numpy beyond the standard library, so any package and any standalone script can
import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Literal, get_args

import numpy as np

__all__ = [
    "MULTI_LABEL_TASK",
    "SEVERITY",
    "SINGLE_LABEL_TASK",
    "TASKS",
    "TOXICITY_CATEGORIES",
    "Action",
    "ScreenStage",
    "Stage",
    "Task",
    "is_comment_line",
    "most_severe",
    "probabilities",
    "sigmoid",
    "softmax",
]

TOXICITY_CATEGORIES: tuple[str, ...] = (
    "toxicity",
    "severe_toxicity",
    "obscene",
    "threat",
    "insult",
    "identity_attack",
)
"""Detoxify's categories; the order is the guard's logit order (docs/CONTRACTS.md, section 1)."""

Action = Literal["allow", "flag", "block"]
"""What the guard does with an item."""
SEVERITY: Mapping[str, int] = MappingProxyType({"allow": 0, "flag": 1, "block": 2})
"""The order of the actions: ``block`` > ``flag`` > ``allow``."""

Stage = Literal["input", "output", "review"]
"""Where a reason was raised: screening the request, the response, or a later review."""
ScreenStage = Literal["input", "output"]
"""The stages :meth:`Guard.screen <fairgate.guardrails.guard.Guard.screen>` runs at."""


def most_severe(actions: Iterable[Action]) -> Action:
    """The strongest of several actions (block > flag > allow); ``allow`` for none."""
    best: Action = "allow"
    for action in actions:
        if SEVERITY[action] > SEVERITY[best]:
            best = action
    return best


Task = Literal["single_label_classification", "multi_label_classification"]
"""A model's ``task`` (the manifest's key): one label per text, or independent labels."""
TASKS: tuple[Task, ...] = get_args(Task)
"""Every :data:`Task`, in the order error messages list them."""
SINGLE_LABEL_TASK: Task = "single_label_classification"
"""The manifest ``task`` with exactly one label per text (softmax over the labels)."""
MULTI_LABEL_TASK: Task = "multi_label_classification"
"""The manifest ``task`` whose labels are independent (per-label sigmoid, not softmax)."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``[n, n_labels]`` logits (shifted by the row max: no overflow)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return result


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function."""
    result: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
    return result


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Softmax (single-label) or per-label sigmoid (multi-label ``task``) of ``logits``."""
    return sigmoid(logits) if task == MULTI_LABEL_TASK else softmax(logits)


def is_comment_line(line: str) -> bool:
    """A stripped line of a one-text-per-line data file that is a comment, not a text.

    ``#`` alone or followed by a space. ``#TBT ...`` is a text: real posts start with
    hashtags, and reading them as comments once dropped 30 training rows silently.
    """
    return line == "#" or line.startswith("# ")
