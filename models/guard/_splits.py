"""Seeded train/validation/test splits of guard data, and writing a split for later scoring.

Trained guards learn on the train split, stop early on validation and are scored on test;
converted guards are scored on the bundled set's test split, so both routes are compared
on the same rows for the same seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fairgate.models.guard._categories import CATEGORIES
from fairgate.models.guard._csv import GuardDataset
from fairgate.models.guard._errors import GuardDataError

__all__ = ["GuardSplits", "cap_rows", "split_guard_data", "write_split"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class GuardSplits:
    """The three parts of one seeded split."""

    train: GuardDataset
    validation: GuardDataset
    test: GuardDataset


def split_guard_data(
    data: GuardDataset, *, seed: int, test_fraction: float, validation_fraction: float
) -> GuardSplits:
    """Seeded split stratified on ``toxicity >= 0.5``: test, validation, the rest to train.

    Fractions are of the whole file, so ``test_fraction=0.2`` is "train on 80%, score on
    20%" with validation carved out of the 80%.
    """
    rng = np.random.default_rng(seed)
    toxic = data.targets[:, 0] >= 0.5
    test, validation, train = [], [], []
    for members in (np.flatnonzero(toxic), np.flatnonzero(~toxic)):
        shuffled = rng.permutation(members)
        n_test = round(len(shuffled) * test_fraction)
        n_val = round(len(shuffled) * validation_fraction)
        test += shuffled[:n_test].tolist()
        validation += shuffled[n_test : n_test + n_val].tolist()
        train += shuffled[n_test + n_val :].tolist()
    if not train or not validation or not test:
        raise GuardDataError(
            f"{len(data)} rows are too few to split into train/validation/test "
            f"({test_fraction:g} test, {validation_fraction:g} validation); give more rows"
        )
    return GuardSplits(
        train=data.subset(sorted(train)),
        validation=data.subset(sorted(validation)),
        test=data.subset(sorted(test)),
    )


def cap_rows(data: GuardDataset, rows: int | None, seed: int) -> GuardDataset:
    """A seeded sample of ``rows`` rows (``--max-train-rows``), in their original order."""
    if rows is None or len(data) <= rows:
        return data
    keep = np.sort(np.random.default_rng(seed).choice(len(data), size=rows, replace=False))
    return data.subset(keep.tolist())


def write_split(data: GuardDataset, path: Path) -> Path:
    """Write a split as CSV (``text`` + its labelled categories) for ``fairgate evaluate``.

    Lets another model be scored on exactly the rows this build held out.
    """
    import pandas as pd

    known = data.known_categories
    frame = pd.DataFrame({"text": data.texts})
    for category in known:
        frame[category] = data.targets[:, CATEGORIES.index(category)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%g")
    logger.info("wrote the %d held-out rows to %s", len(frame), path)
    return path
