"""Loading labelled text: formats, label mapping, fingerprints and the errors users hit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fairgate.models.datasets import fingerprint_records, load_labelled_data
from fairgate.models.errors import DataError

ROWS = [
    ("great product, works well", "positive", "female"),
    ("broke after a day", "negative", "male"),
    ("would buy again", "positive", "male"),
    ("terrible service", "negative", "female"),
]


def _csv(path: Path, rows=ROWS, header="text,label,group") -> Path:
    lines = [header] + [f'"{t}",{l},{g}' for t, l, g in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_csv_loads_texts_labels_groups(tmp_path: Path) -> None:
    data = load_labelled_data(_csv(tmp_path / "d.csv"), group_column="group")
    assert data.texts[0] == "great product, works well"
    assert data.labels == ("negative", "positive")  # sorted when not given
    assert data.targets.tolist() == [1, 0, 1, 0]
    assert data.groups == ["female", "male", "male", "female"]
    assert data.fingerprint.startswith("sha256:")


def test_tsv_integer_labels_map_to_given_names(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_text('label\tsentence\n0\tit is " quoted bad\n1\tgood one\n', encoding="utf-8")
    data = load_labelled_data(path, text_column="sentence", labels=["negative", "positive"])
    assert data.texts == ['it is " quoted bad', "good one"]
    assert data.label_names == ["negative", "positive"]


def test_jsonl_and_csv_of_same_records_share_a_fingerprint(tmp_path: Path) -> None:
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps({"text": t, "label": l, "group": g}) for t, l, g in ROWS) + "\n",
        encoding="utf-8",
    )
    a = load_labelled_data(jsonl, group_column="group")
    b = load_labelled_data(_csv(tmp_path / "d.csv"), group_column="group")
    assert a.fingerprint == b.fingerprint
    changed = list(ROWS)
    changed[0] = ("great product, works well", "negative", "female")
    c = load_labelled_data(_csv(tmp_path / "e.csv", rows=changed), group_column="group")
    assert c.fingerprint != b.fingerprint


def test_missing_column_names_the_columns_present(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_labelled_data(_csv(tmp_path / "d.csv"), label_column="sentiment")
    message = str(error.value)
    assert "['sentiment']" in message
    assert "['text', 'label', 'group']" in message
    assert "--label-column" in message


def test_empty_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="the file is empty"):
        load_labelled_data(path)


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DataError, match="no rows of data"):
        load_labelled_data(path)


def test_unknown_label_names_row_value_and_expected(tmp_path: Path) -> None:
    rows = [*ROWS, ("meh", "neutral", "male")]
    with pytest.raises(DataError) as error:
        load_labelled_data(_csv(tmp_path / "d.csv", rows=rows), labels=["negative", "positive"])
    message = str(error.value)
    assert "unknown label 'neutral' in row 5" in message
    assert "['negative', 'positive']" in message


def test_single_label_value_is_not_a_classifier(tmp_path: Path) -> None:
    rows = [(t, "positive", g) for t, _, g in ROWS]
    with pytest.raises(DataError, match="only the label"):
        load_labelled_data(_csv(tmp_path / "d.csv", rows=rows))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_labelled_data(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a directory"):
        load_labelled_data(tmp_path)


def test_hub_dataset_offline_names_the_offline_alternatives() -> None:
    with pytest.raises(DataError) as error:
        load_labelled_data("fairgate-test/no-such-dataset")
    message = str(error.value)
    assert "fairgate-test/no-such-dataset" in message
    assert "--data bundled" in message and "local" in message


def test_max_samples_is_a_seeded_sample(tmp_path: Path) -> None:
    rows = [(f"text number {i}", "positive" if i % 2 else "negative", "none") for i in range(50)]
    path = _csv(tmp_path / "d.csv", rows=rows)
    a = load_labelled_data(path, max_samples=10, seed=1)
    b = load_labelled_data(path, max_samples=10, seed=1)
    c = load_labelled_data(path, max_samples=10, seed=2)
    assert a.texts == b.texts and len(a) == 10
    assert a.texts != c.texts


def test_multi_label_columns_give_float_targets(tmp_path: Path) -> None:
    path = tmp_path / "tox.csv"
    path.write_text("text,toxicity,insult\nyou idiot,1,0.8\nhello,0,0\n", encoding="utf-8")
    data = load_labelled_data(path, label_columns=["toxicity", "insult"])
    assert data.task == "multi_label_classification"
    assert data.targets.dtype == np.float32
    assert data.targets.tolist() == [[1.0, pytest.approx(0.8)], [0.0, 0.0]]
    path.write_text("text,toxicity,insult\nyou idiot,2,0\n", encoding="utf-8")
    with pytest.raises(DataError, match="must be 0/1 or a fraction"):
        load_labelled_data(path, label_columns=["toxicity", "insult"])


def test_fingerprint_normalises_unicode() -> None:
    targets = np.asarray([1])
    composed = fingerprint_records(["caf\u00e9"], targets)
    decomposed = fingerprint_records(["cafe\u0301"], targets)
    assert composed == decomposed
