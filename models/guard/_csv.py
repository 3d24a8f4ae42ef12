"""Read a labelled CSV as multi-label guard data: texts, targets and a known-label mask.

Three layouts:

* Jigsaw: one 0/1 column per category, named as the guard names them
  (``toxicity, severe_toxicity, obscene, threat, insult, identity_attack``) or as the
  Jigsaw 2018 files do (``toxic, severe_toxic, identity_hate``). All six must be there.
* Single: one ``toxic`` (or ``toxicity``) column and none of the other categories.
  Only ``toxicity`` is learned; the other five are masked out of the loss, not set to 0.
* Label map: ``CATEGORY=COLUMN`` (a 0/1 column) or ``CATEGORY=COLUMN:V1,V2`` (positive
  where the column holds one of the values), e.g. Davidson's ``toxicity=class:0,1``.

Unknown categories are masked rather than assumed non-toxic: a tweet labelled only
"offensive or not" says nothing about whether it threatens anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from fairgate.models.guard._categories import CATEGORIES, CATEGORY_ALIASES
from fairgate.models.guard._errors import GuardDataError, SourceSpecError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

logger = logging.getLogger(__name__)

TEXT_COLUMNS: tuple[str, ...] = ("text", "comment_text", "tweet", "sentence", "content")
_TRUE = {"1", "1.0", "true"}
_FALSE = {"0", "0.0", "false"}
_SHOWN = 5


class LabelRule(BaseModel):
    """One ``--label-map`` entry: which column (and which values) give a category."""

    model_config = ConfigDict(frozen=True)

    category: str
    column: str
    positive: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> LabelRule:
        """Parse ``CATEGORY=COLUMN`` or ``CATEGORY=COLUMN:V1,V2``."""
        category, sep, rest = text.partition("=")
        category = CATEGORY_ALIASES.get(category.strip(), category.strip())
        column, _, values = rest.partition(":")
        if not sep or not column.strip():
            raise SourceSpecError(
                f"--label-map {text!r} is not CATEGORY=COLUMN or CATEGORY=COLUMN:V1,V2 "
                "(e.g. toxicity=class:0,1 for Davidson's hate speech or offensive)"
            )
        if category not in CATEGORIES:
            raise SourceSpecError(
                f"--label-map {text!r}: unknown category {category!r}; use one of "
                f"{', '.join(CATEGORIES)}"
            )
        positive = tuple(v.strip() for v in values.split(",") if v.strip()) if values else None
        return cls(category=category, column=column.strip(), positive=positive)

    def describe(self) -> str:
        values = f" in {{{', '.join(self.positive)}}}" if self.positive else " (0/1)"
        return f"{self.column}{values}"


@dataclass(frozen=True)
class GuardDataset:
    """Texts with a ``[n, 6]`` float target matrix and a mask of the known labels."""

    texts: list[str]
    targets: np.ndarray
    mask: np.ndarray
    layout: str
    columns: dict[str, str]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def known_categories(self) -> list[str]:
        """Categories with a label in this data (the others are masked out)."""
        return [c for i, c in enumerate(CATEGORIES) if bool(self.mask[:, i].any())]

    def subset(self, indices: Sequence[int]) -> GuardDataset:
        """The rows at ``indices``, same layout."""
        import numpy as np

        index = np.asarray(indices, dtype=np.int64)
        return GuardDataset(
            texts=[self.texts[i] for i in index],
            targets=self.targets[index],
            mask=self.mask[index],
            layout=self.layout,
            columns=dict(self.columns),
        )


def _lines(rows: pd.Index) -> str:
    return ", ".join(str(int(i) + 2) for i in rows[:_SHOWN])  # +1 header, +1 one-based


def _binary(frame: pd.DataFrame, column: str, path: Path, soft: bool) -> np.ndarray:
    """A 0/1 (or true/false, or with ``soft`` a fraction in [0, 1]) column as floats."""
    import numpy as np
    import pandas as pd

    raw = frame[column]
    empty = raw.isna() | (raw.astype(str).str.strip() == "")
    if empty.any():
        raise GuardDataError(
            f"{path}: column {column!r} has {int(empty.sum())} empty labels (CSV lines "
            f"{_lines(raw.index[empty])}); fill them with 0 or 1 or drop those rows"
        )
    text = raw.astype(str).str.strip().str.lower()
    values = np.where(text.isin(_TRUE), 1.0, np.where(text.isin(_FALSE), 0.0, np.nan))
    if soft:
        numeric = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
        in_range = (numeric >= 0.0) & (numeric <= 1.0)
        values = np.where(np.isnan(values) & in_range, numeric, values)
    bad = np.isnan(values)
    if bad.any():
        shown = ", ".join(repr(v) for v in pd.unique(raw[bad].astype(str))[:_SHOWN])
        allowed = "fractions in [0, 1]" if soft else "0/1 (or true/false) labels"
        raise GuardDataError(
            f"{path}: column {column!r} must hold {allowed}; found {shown} "
            f"(CSV lines {_lines(raw.index[bad])}). Use --label-map {column}=COLUMN:V1,V2 "
            "to say which values count as toxic"
            + ("" if soft else ", or --soft-labels for rater fractions in [0, 1]")
        )
    return values.astype(np.float32)


def _mapped(frame: pd.DataFrame, rule: LabelRule, path: Path, soft: bool) -> np.ndarray:
    import numpy as np

    if rule.positive is None:
        return _binary(frame, rule.column, path, soft)
    raw = frame[rule.column]
    if raw.isna().any():
        raise GuardDataError(
            f"{path}: column {rule.column!r} has {int(raw.isna().sum())} empty values "
            f"(CSV lines {_lines(raw.index[raw.isna()])}); fill or drop those rows"
        )
    text = raw.astype(str).str.strip()
    wanted = set(rule.positive)
    numbers = {float(v) for v in wanted if _is_number(v)}
    hit = text.isin(wanted) | text.map(lambda v: _is_number(v) and float(v) in numbers)
    return hit.to_numpy(dtype=np.float32)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def read_guard_csv(
    path: Path | str,
    *,
    text_column: str | None = None,
    label_map: Sequence[LabelRule] = (),
    soft_labels: bool = False,
) -> GuardDataset:
    """Read ``path`` in one of the three layouts; errors name the column, values and fix."""
    import numpy as np
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=True)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise GuardDataError(f"cannot read {path} as CSV: {error}") from error
    columns = [str(c) for c in frame.columns]

    if text_column is None:
        text_column = next((c for c in TEXT_COLUMNS if c in columns), None)
        if text_column is None:
            raise GuardDataError(
                f"{path}: no text column (looked for {', '.join(TEXT_COLUMNS)}; found "
                f"{', '.join(columns)}); name it with --text-column"
            )
    elif text_column not in columns:
        raise GuardDataError(
            f"{path}: --text-column {text_column!r} not found (columns: {', '.join(columns)})"
        )
    has_text = frame[text_column].notna() & (frame[text_column].astype(str).str.strip() != "")
    if not has_text.all():
        logger.warning("%s: dropping %d rows with empty text", path, int((~has_text).sum()))
        frame = frame[has_text]
    if frame.empty:
        raise GuardDataError(f"{path}: no rows with text in column {text_column!r}")

    n = len(frame)
    targets = np.zeros((n, len(CATEGORIES)), dtype=np.float32)
    mask = np.zeros((n, len(CATEGORIES)), dtype=np.float32)
    described: dict[str, str] = {}
    present = {
        CATEGORY_ALIASES.get(c, c): c for c in columns if CATEGORY_ALIASES.get(c, c) in CATEGORIES
    }

    if label_map:
        layout = "label_map"
        for rule in label_map:
            if rule.column not in columns:
                raise GuardDataError(
                    f"{path}: --label-map {rule.category}={rule.column}: no column "
                    f"{rule.column!r} (columns: {', '.join(columns)})"
                )
            i = CATEGORIES.index(rule.category)
            targets[:, i] = _mapped(frame, rule, path, soft_labels)
            mask[:, i] = 1.0
            described[rule.category] = rule.describe()
    elif set(present) - {"toxicity"}:
        layout = "jigsaw"
        missing = [c for c in CATEGORIES if c not in present]
        if missing:
            raise GuardDataError(
                f"{path}: missing category column(s) {', '.join(missing)}: the Jigsaw layout "
                f"needs one 0/1 column per category ({', '.join(CATEGORIES)}); found "
                f"{', '.join(columns)}. Add them, keep a single 'toxic' column, or map "
                "columns with --label-map CATEGORY=COLUMN[:V1,V2]"
            )
        for i, category in enumerate(CATEGORIES):
            targets[:, i] = _binary(frame, present[category], path, soft_labels)
            mask[:, i] = 1.0
            described[category] = present[category]
    elif "toxicity" in present:
        layout = "single"
        targets[:, 0] = _binary(frame, present["toxicity"], path, soft_labels)
        mask[:, 0] = 1.0
        described["toxicity"] = present["toxicity"]
    else:
        raise GuardDataError(
            f"{path}: no label columns: expected one 0/1 column per category "
            f"({', '.join(CATEGORIES)}), a single 'toxic' column, or --label-map "
            f"CATEGORY=COLUMN[:V1,V2] (found columns: {', '.join(columns)})"
        )
    texts = frame[text_column].astype(str).tolist()
    logger.info("%s: %d rows, layout %s, labels for %s", path, n, layout, ", ".join(described))
    return GuardDataset(texts=texts, targets=targets, mask=mask, layout=layout, columns=described)
