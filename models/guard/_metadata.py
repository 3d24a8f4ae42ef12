"""Metadata the BentoML store accepts: no ``None``, no NaN-turned-``None``.

BentoML rejects ``None`` anywhere in a model's metadata, and ``fairgate.models.store.json_safe``
turns NaN into ``None``. A figure that cannot be computed (an AUC on one class, a
group with no sentences) must still be reported as such, never as a silent 0, so NaN
becomes the string ``"NaN"`` and an unset option is simply left out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

NOT_A_NUMBER = "NaN"


def store_safe(value: Any) -> Any:
    """A copy of ``value`` that BentoML's metadata validator accepts."""
    if isinstance(value, dict):
        return {str(k): store_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [("n/a" if v is None else store_safe(v)) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return NOT_A_NUMBER
    if isinstance(value, Path):
        return str(value)
    return value
