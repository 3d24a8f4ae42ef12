"""The guard's six output categories and the names other sources use for them.

``CATEGORIES`` is :data:`fairgate.guardrails.contracts.TOXICITY_CATEGORIES`. The order
is part of the contract (docs/CONTRACTS.md, section 1): the guard's logits
come out in exactly this order, whatever the source model called or ordered them.
"""

from __future__ import annotations

from collections.abc import Sequence

from fairgate.guardrails.contracts import TOXICITY_CATEGORIES as CATEGORIES

# Older Detoxify checkpoints (``original``, ``original-small``) and the Jigsaw 2018
# CSVs use these names; detoxify's own loader renames them the same way.
CATEGORY_ALIASES: dict[str, str] = {
    "toxic": "toxicity",
    "severe_toxic": "severe_toxicity",
    "identity_hate": "identity_attack",
}


def canonical_category(name: str) -> str:
    """Map a source's class name onto ours (``toxic`` -> ``toxicity``); others pass through."""
    return CATEGORY_ALIASES.get(name, name)


def category_indices(class_names: Sequence[str]) -> list[int]:
    """Index of each of our six categories in a source's output vector.

    Raises ``KeyError`` naming the missing categories; callers turn it into their own
    error type with the context (which checkpoint, which fix).
    """
    canonical = [canonical_category(name) for name in class_names]
    missing = [category for category in CATEGORIES if category not in canonical]
    if missing:
        raise KeyError(", ".join(missing))
    return [canonical.index(category) for category in CATEGORIES]
