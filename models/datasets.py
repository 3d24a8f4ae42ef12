"""Labelled text for training and evaluation: loading, checking, splitting, fingerprinting.

One loader for every source the CLI accepts (``bundled``, a CSV/TSV/JSONL file, a
Hugging Face dataset id), so training, ``fairgate evaluate`` and the guard all see the
same checks and the same error messages. Heavy imports (pandas, datasets) stay inside
the functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from fairgate.models.errors import DataError

__all__ = [
    "BUNDLED_IDENTITY",
    "BUNDLED_SENTIMENT",
    "DataSplits",
    "LabelledData",
    "Task",
    "bundled_data_path",
    "fingerprint_records",
    "load_labelled_data",
    "split_data",
]

logger = logging.getLogger(__name__)

Task = Literal["single_label_classification", "multi_label_classification"]

BUNDLED_SENTIMENT = Path("sentiment") / "reviews.csv"
BUNDLED_IDENTITY = Path("identity") / "identity_sentences.csv"
_FILE_SUFFIXES = {".csv", ".tsv", ".jsonl", ".json", ".txt"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?(:[\w.-]+)?$")


@dataclass(frozen=True, kw_only=True)
class LabelledData:
    """Texts with their targets, label names, optional groups, and where they came from.

    ``targets`` is ``int64 [n]`` (indices into ``labels``) for single-label data and
    ``float32 [n, len(labels)]`` (independent targets in [0, 1]) for multi-label data.
    """

    texts: list[str]
    targets: np.ndarray
    labels: tuple[str, ...]
    task: Task = "single_label_classification"
    groups: list[str] | None = None
    source: str = ""
    fingerprint: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabelledData:
        """The rows at ``indices``, in that order, with a fingerprint of their own."""
        idx = np.asarray(indices, dtype=np.int64)
        texts = [self.texts[i] for i in idx]
        groups = [self.groups[i] for i in idx] if self.groups is not None else None
        targets = self.targets[idx]
        extra = {k: [v[i] for i in idx] for k, v in self.extra.items()}
        return LabelledData(
            texts=texts,
            targets=targets,
            labels=self.labels,
            task=self.task,
            groups=groups,
            source=self.source,
            fingerprint=fingerprint_records(texts, targets, groups),
            extra=extra,
        )

    @property
    def label_names(self) -> list[str]:
        """Per-row label name (single-label data only)."""
        if self.task != "single_label_classification":
            raise DataError("label_names is only defined for single-label data")
        return [self.labels[int(t)] for t in self.targets]


@dataclass(frozen=True, kw_only=True)
class DataSplits:
    """Train / validation / test parts of one data set, split once by seed."""

    train: LabelledData
    validation: LabelledData
    test: LabelledData
    seed: int


def bundled_data_path(relative: Path = BUNDLED_SENTIMENT) -> Path:
    """Path of a file of the bundled data (``models/data/``), checked to exist."""
    path = Path(__file__).resolve().parent / "data" / relative
    if not path.is_file():
        raise DataError(
            f"bundled data file {path} is missing; reinstall fairgate (`make install`) "
            "or pass --data PATH with a local CSV/TSV/JSONL file"
        )
    return path


def fingerprint_records(
    texts: Sequence[str], targets: np.ndarray, groups: Sequence[str] | None = None
) -> str:
    """sha256 of the normalised records (NFC text, target, group), in order.

    The same records give the same fingerprint whatever the file format they came from.
    """
    digest = hashlib.sha256()
    for i, text in enumerate(texts):
        target = targets[i]
        target_value = target.tolist() if isinstance(target, np.ndarray) else target.item()
        if isinstance(target_value, list):
            target_value = [round(float(v), 6) for v in target_value]
        record = [
            unicodedata.normalize("NFC", text).strip(),
            target_value,
            groups[i] if groups is not None else None,
        ]
        digest.update(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode())
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()


def load_labelled_data(
    source: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    label_columns: Sequence[str] | None = None,
    group_column: str | None = None,
    labels: Sequence[str] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    hub_split: str = "train",
    extra_columns: Sequence[str] = (),
) -> LabelledData:
    """Load labelled text from ``bundled``, a CSV/TSV/JSONL file or a hub dataset id.

    Single-label data (the default) reads ``label_column``; its values are label names,
    or integer indices into ``labels`` (as in GLUE's SST-2). Multi-label data reads one
    column per label in ``label_columns`` (0/1 or a fraction in [0, 1]).
    ``max_samples`` keeps a seeded random sample, in file order.
    """
    frame, description = _read_frame(source, hub_split=hub_split)
    columns = list(frame.columns)
    needed = [text_column, *(label_columns or [label_column])]
    if group_column:
        needed.append(group_column)
    needed.extend(extra_columns)
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(
            f"{description}: column(s) {missing} not found; the columns present are "
            f"{columns}; choose with --text-column / --label-column / --group-column"
        )
    if len(frame) == 0:
        raise DataError(f"{description}: no rows of data (empty file or header only)")
    if max_samples is not None and len(frame) > max_samples:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(frame), size=max_samples, replace=False))
        frame = frame.iloc[keep].reset_index(drop=True)

    texts = _texts(frame[text_column].tolist(), description, text_column)
    if label_columns:
        task: Task = "multi_label_classification"
        label_names = tuple(labels) if labels else tuple(label_columns)
        targets = _multi_targets(frame, list(label_columns), description)
    else:
        task = "single_label_classification"
        label_names, targets = _single_targets(
            frame[label_column].tolist(), labels, description, label_column
        )
    groups = None
    if group_column:
        groups = [_clean_group(v) for v in frame[group_column].tolist()]
    extra = {c: [str(v) for v in frame[c].tolist()] for c in extra_columns}
    data = LabelledData(
        texts=texts,
        targets=targets,
        labels=label_names,
        task=task,
        groups=groups,
        source=description,
        fingerprint=fingerprint_records(texts, targets, groups),
        extra=extra,
    )
    logger.info("loaded %d rows from %s (%s)", len(data), description, data.fingerprint[:19])
    return data


def split_data(
    data: LabelledData,
    *,
    seed: int,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> DataSplits:
    """Split deterministically by seed, stratified by label where every class allows it.

    ``test_fraction=0`` leaves the test part empty (for a separate test file).
    """
    n = len(data)
    n_val = max(1, round(n * validation_fraction))
    n_test = round(n * test_fraction) if test_fraction > 0 else 0
    if test_fraction > 0:
        n_test = max(1, n_test)
    if n - n_val - n_test < 1:
        raise DataError(
            f"{data.source}: {n} rows are too few to split into train/validation/test; "
            "give more data or lower --max-samples"
        )
    rng = np.random.default_rng(seed)
    if data.task == "single_label_classification":
        order = _stratified_order(data.targets, rng)
    else:
        order = rng.permutation(n)
    # Interleaved stratified order: taking consecutive slices keeps class proportions.
    val_idx = np.sort(order[:n_val])
    test_idx = np.sort(order[n_val : n_val + n_test])
    train_idx = np.sort(order[n_val + n_test :])
    return DataSplits(
        train=data.subset(train_idx),
        validation=data.subset(val_idx),
        test=data.subset(test_idx),
        seed=seed,
    )


def _stratified_order(targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation in which every prefix has (about) the class proportions of the whole."""
    keys = np.empty(len(targets), dtype=np.float64)
    for cls in np.unique(targets):
        members = np.flatnonzero(targets == cls)
        shuffled = rng.permutation(members)
        # Spread each class evenly over [0, 1); a random offset breaks ties between classes.
        keys[shuffled] = (np.arange(len(members)) + rng.random()) / len(members)
    return np.argsort(keys, kind="stable")


def _read_frame(source: str | Path, *, hub_split: str):  # -> tuple[pd.DataFrame, str]
    import pandas as pd

    text = str(source)
    if text == "bundled":
        path = bundled_data_path()
        return _read_file(path), f"bundled:{BUNDLED_SENTIMENT.as_posix()}"
    path = Path(text).expanduser()
    if path.is_file():
        return _read_file(path), str(path)
    if path.is_dir():
        raise DataError(f"--data {text} is a directory; give a CSV, TSV or JSONL file")
    if path.suffix.lower() in _FILE_SUFFIXES or text.startswith((".", "/", "~")):
        raise DataError(f"data file {text} not found; check the path (or use --data bundled)")
    if not _HUB_ID.match(text):
        raise DataError(
            f"--data {text!r} is neither an existing file nor a Hugging Face dataset id; "
            "give a CSV/TSV/JSONL path, a dataset id such as 'imdb', or 'bundled'"
        )
    frame = _load_hub_dataset(text, split=hub_split)
    assert isinstance(frame, pd.DataFrame)
    return frame, f"hf:{text}[{hub_split}]"


def _read_file(path: Path):  # -> pd.DataFrame
    import pandas as pd

    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty; it needs a header row and data rows")
    try:
        if suffix in {".jsonl", ".json"}:
            rows = []
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as error:
                            raise DataError(
                                f"{path}:{number}: not a JSON object per line ({error.msg})"
                            ) from error
            if not rows:
                raise DataError(f"{path}: the file has no JSON records")
            return pd.DataFrame(rows)
        if suffix == ".tsv":
            # GLUE-style TSV: quotes are literal text, not field delimiters.
            return pd.read_csv(
                path, sep="\t", dtype=str, keep_default_na=False, quoting=3, encoding="utf-8"
            )
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError as error:
        raise DataError(f"{path}: the file is empty; it needs a header row and data rows") from error
    except pd.errors.ParserError as error:
        raise DataError(f"{path}: cannot parse as {suffix or 'CSV'} ({error})") from error
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason})") from error


def _load_hub_dataset(dataset_id: str, *, split: str):  # -> pd.DataFrame
    """Real ``datasets.load_dataset``; offline it fails naming the offline alternatives."""
    try:
        import datasets
    except ImportError as error:  # pragma: no cover - [train] extra missing
        raise DataError("loading a hub dataset needs the [train] extra (`datasets`)") from error
    name, _, config = dataset_id.partition(":")
    try:
        dataset = datasets.load_dataset(name, config or None, split=split)
    except Exception as error:  # the hub raises many types: connection, offline, missing
        raise DataError(
            f"could not load Hugging Face dataset {dataset_id!r} (split {split!r}): "
            f"{type(error).__name__}: {error}. Without network access, use a local "
            "CSV/TSV/JSONL file (--data PATH) or the bundled data (--data bundled)"
        ) from error
    frame = dataset.to_pandas()
    for column, feature in dataset.features.items():
        names = getattr(feature, "names", None)
        if names:  # ClassLabel: keep names, not indices
            frame[column] = [names[int(v)] if int(v) >= 0 else "" for v in frame[column]]
    return frame


def _texts(values: list, description: str, column: str) -> list[str]:
    texts = []
    for row, value in enumerate(values, start=1):
        text = "" if value is None else str(value)
        if not text.strip() or text == "nan":
            raise DataError(f"{description}: row {row} has an empty {column!r}; remove it")
        texts.append(text)
    return texts


def _single_targets(
    values: list, labels: Sequence[str] | None, description: str, column: str
) -> tuple[tuple[str, ...], np.ndarray]:
    raw = ["" if v is None else str(v).strip() for v in values]
    for row, value in enumerate(raw, start=1):
        if value == "" or value == "nan":
            raise DataError(f"{description}: row {row} has no {column!r} value")
    if labels:
        names = tuple(labels)
        index = {name: i for i, name in enumerate(names)}
        targets = np.empty(len(raw), dtype=np.int64)
        for row, value in enumerate(raw):
            if value in index:
                targets[row] = index[value]
            elif value.lstrip("-").isdigit() and 0 <= int(value) < len(names):
                targets[row] = int(value)
            else:
                raise DataError(
                    f"{description}: unknown label {value!r} in row {row + 1}; expected one of "
                    f"{list(names)} (or an index 0..{len(names) - 1}); fix the row or --labels"
                )
        return names, targets
    names = tuple(sorted(set(raw)))
    if len(names) < 2:
        raise DataError(
            f"{description}: column {column!r} has only the label(s) {list(names)}; "
            "a classifier needs at least two"
        )
    index = {name: i for i, name in enumerate(names)}
    return names, np.asarray([index[v] for v in raw], dtype=np.int64)


def _multi_targets(frame, columns: list[str], description: str) -> np.ndarray:
    targets = np.empty((len(frame), len(columns)), dtype=np.float32)
    for j, column in enumerate(columns):
        for row, value in enumerate(frame[column].tolist()):
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = float("nan")
            if not 0.0 <= number <= 1.0:
                raise DataError(
                    f"{description}: row {row + 1} column {column!r} has {value!r}; "
                    "multi-label targets must be 0/1 or a fraction in [0, 1]"
                )
            targets[row, j] = number
    return targets


def _clean_group(value: object) -> str:
    text = "" if value is None else str(value).strip()
    return text if text and text != "nan" else "none"
