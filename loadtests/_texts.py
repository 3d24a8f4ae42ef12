"""The texts every phase of the benchmark and every load scenario sends.

One loader for all of them, so the floor, fairgate and the usual stack see the same
sentences in the same order: real SST-2 development sentences when ``../shared/data``
is beside the project, else the review texts the project bundles. Toxic text (for the
scenarios that exercise the guard) comes from the bundled toxicity data.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SST2_DEV = REPO_ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
BUNDLED_REVIEWS = REPO_ROOT / "models" / "data" / "sentiment" / "reviews.csv"
BUNDLED_TOXICITY = REPO_ROOT / "models" / "data" / "toxicity" / "toxicity.csv"

# The default policy's allowed gender groups plus one the policy does not know (counted
# as "other") and no group at all: the skewed scenario weights them unevenly on purpose.
SKEWED_GROUP_WEIGHTS: Mapping[str | None, float] = {
    "female": 0.60,
    "male": 0.25,
    "nonbinary": 0.05,
    "martian": 0.02,
    None: 0.08,
}
UNIFORM_GROUP_WEIGHTS: Mapping[str | None, float] = {"female": 1.0, "male": 1.0, "nonbinary": 1.0}


class TextSourceError(RuntimeError):
    """No usable text file was found, or it lacks the expected column."""


@dataclass(frozen=True, slots=True)
class TextCorpus:
    """Benign and toxic texts, and where each came from (reported in bench.json)."""

    benign: tuple[str, ...]
    toxic: tuple[str, ...]
    benign_source: str
    toxic_source: str | None


def read_column(path: Path, column: str, *, delimiter: str = ",") -> list[str]:
    """Non-empty values of ``column`` in a CSV/TSV file, in file order."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=quoting)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise TextSourceError(
                f"{path} has no column {column!r} (columns: {reader.fieldnames}); "
                f"expected a header row naming {column!r}"
            )
        return [row[column].strip() for row in reader if (row.get(column) or "").strip()]


def _toxic_rows(path: Path) -> list[str]:
    """Toxic texts of the bundled toxicity CSV: rows labelled toxic where a label exists."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if "text" not in fields:
            raise TextSourceError(f"{path} has no column 'text' (columns: {fields})")
        rows = [row for row in reader if (row.get("text") or "").strip()]
    if "toxicity" in fields:
        labelled = [row for row in rows if _as_float(row["toxicity"]) >= 0.5]
        if labelled:
            rows = labelled
    return [row["text"].strip() for row in rows]


def _as_float(value: str | None) -> float:
    try:
        return float(value or 0.0)
    except ValueError:
        return 0.0


def load_corpus(
    *,
    sst2_path: Path = SST2_DEV,
    reviews_path: Path = BUNDLED_REVIEWS,
    toxicity_path: Path = BUNDLED_TOXICITY,
    limit: int | None = None,
) -> TextCorpus:
    """Load the benchmark texts; SST-2 dev first, the bundled reviews otherwise."""
    if sst2_path.is_file():
        benign = read_column(sst2_path, "sentence", delimiter="\t")
        benign_source = f"sst2-dev ({sst2_path})"
    elif reviews_path.is_file():
        benign = read_column(reviews_path, "text")
        benign_source = f"bundled reviews ({reviews_path})"
    else:
        raise TextSourceError(
            f"no benchmark texts: neither {sst2_path} nor {reviews_path} exists; "
            "put SST-2 at ../shared/data/sst2/dev.tsv or restore models/data/sentiment/reviews.csv"
        )
    if not benign:
        raise TextSourceError(f"{benign_source} holds no text")
    toxic: list[str] = []
    toxic_source: str | None = None
    if toxicity_path.is_file():
        toxic = _toxic_rows(toxicity_path)
        toxic_source = f"bundled toxicity ({toxicity_path})"
    if limit is not None:
        benign = benign[:limit]
        toxic = toxic[:limit]
    return TextCorpus(
        benign=tuple(benign), toxic=tuple(toxic), benign_source=benign_source, toxic_source=toxic_source
    )


def pick_group(rng: random.Random, weights: Mapping[str | None, float]) -> str | None:
    """One group drawn with the given weights (``None`` means: send no group)."""
    groups = list(weights)
    return rng.choices(groups, weights=[weights[g] for g in groups], k=1)[0]


def make_items(
    corpus: TextCorpus,
    count: int,
    *,
    toxic_fraction: float = 0.0,
    group_weights: Mapping[str | None, float] = UNIFORM_GROUP_WEIGHTS,
    seed: int = 0,
) -> list[dict[str, str]]:
    """``count`` request items ``{"text", "group"?}``, deterministic for a seed.

    Benign texts are taken in corpus order (cycling), so every phase of the benchmark
    sends the same sentences; a toxic text replaces a benign one with probability
    ``toxic_fraction``.
    """
    if not 0.0 <= toxic_fraction <= 1.0:
        raise ValueError(f"toxic_fraction={toxic_fraction} must be within [0, 1]")
    if toxic_fraction > 0 and not corpus.toxic:
        raise TextSourceError(
            f"toxic_fraction={toxic_fraction} but no toxic texts were loaded; "
            f"build {BUNDLED_TOXICITY} or use toxic_fraction=0"
        )
    rng = random.Random(seed)
    items: list[dict[str, str]] = []
    for index in range(count):
        if toxic_fraction and rng.random() < toxic_fraction:
            text = corpus.toxic[rng.randrange(len(corpus.toxic))]
        else:
            text = corpus.benign[index % len(corpus.benign)]
        item = {"text": text}
        group = pick_group(rng, group_weights)
        if group is not None:
            item["group"] = group
        items.append(item)
    return items


def batched(items: Sequence[dict[str, str]], size: int) -> list[list[dict[str, str]]]:
    """Consecutive slices of ``size`` items (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"batch size {size} must be at least 1")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
