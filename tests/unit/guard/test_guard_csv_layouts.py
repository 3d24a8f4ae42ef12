"""Labelled CSVs in the Jigsaw, single-column and label-map layouts; errors name the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fairgate.models.guard import CATEGORIES, GuardDataError, LabelRule, SourceSpecError, read_guard_csv


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_jigsaw_layout_with_jigsaw_2018_names(tmp_path: Path):
    path = _write(
        tmp_path,
        "id,comment_text,toxic,severe_toxic,obscene,threat,insult,identity_hate\n"
        "1,you idiot,1,0,0,0,1,0\n"
        "2,nice day,0,0,0,0,0,0\n"
        "3,i will hurt you,1,1,0,1,0,0\n",
    )
    data = read_guard_csv(path)
    assert data.layout == "jigsaw"
    assert data.texts == ["you idiot", "nice day", "i will hurt you"]
    np.testing.assert_array_equal(data.targets[2], [1, 1, 0, 1, 0, 0])
    assert data.mask.all()
    assert data.columns["identity_attack"] == "identity_hate"


def test_single_toxic_column_masks_the_other_categories(tmp_path: Path):
    path = _write(tmp_path, "text,toxic\nyou idiot,true\nnice day,False\n")
    data = read_guard_csv(path)
    assert data.layout == "single"
    np.testing.assert_array_equal(data.targets[:, 0], [1, 0])
    assert data.known_categories == ["toxicity"]
    assert data.mask[:, 1:].sum() == 0


def test_label_map_for_davidson_classes(tmp_path: Path):
    path = _write(
        tmp_path,
        ",count,hate_speech,offensive_language,neither,class,tweet\n"
        "0,3,0,0,3,2,have a good one\n"
        "1,3,0,3,0,1,offensive tweet\n"
        "2,3,2,1,0,0,hateful tweet\n",
    )
    rule = LabelRule.parse("toxicity=class:0,1")
    data = read_guard_csv(path, label_map=[rule])
    assert data.texts[0] == "have a good one"  # the `tweet` column is found by name
    np.testing.assert_array_equal(data.targets[:, 0], [0, 1, 1])
    assert data.known_categories == ["toxicity"]
    assert data.columns == {"toxicity": "class in {0, 1}"}


def test_missing_category_column_is_named(tmp_path: Path):
    path = _write(tmp_path, "text,toxicity,obscene,insult\na,1,0,1\n")
    with pytest.raises(GuardDataError) as info:
        read_guard_csv(path)
    message = str(info.value)
    assert "missing category column(s) severe_toxicity, threat, identity_attack" in message
    assert "--label-map CATEGORY=COLUMN[:V1,V2]" in message


def test_non_binary_values_are_named_with_their_lines(tmp_path: Path):
    header = "text," + ",".join(CATEGORIES) + "\n"
    path = _write(tmp_path, header + "a,1,0,0,0,0,0\nb,0,0,2,0,0,0\nc,0,0,maybe,0,0,0\n")
    with pytest.raises(GuardDataError) as info:
        read_guard_csv(path)
    message = str(info.value)
    assert "column 'obscene' must hold 0/1 (or true/false) labels; found '2', 'maybe' (CSV lines 3, 4)" in message
    assert "--soft-labels" in message


def test_soft_labels_accept_fractions_but_not_out_of_range(tmp_path: Path):
    header = "text," + ",".join(CATEGORIES) + "\n"
    path = _write(tmp_path, header + "a,0.7,0,0.1,0,0.5,0\n")
    data = read_guard_csv(path, soft_labels=True)
    np.testing.assert_allclose(data.targets[0], [0.7, 0, 0.1, 0, 0.5, 0])
    bad = _write(tmp_path, header + "a,1.5,0,0,0,0,0\n")
    with pytest.raises(GuardDataError, match="column 'toxicity' must hold fractions in \\[0, 1\\]; found '1.5'"):
        read_guard_csv(bad, soft_labels=True)


def test_empty_label_is_an_error(tmp_path: Path):
    path = _write(tmp_path, "text,toxic\na,1\nb,\n")
    with pytest.raises(GuardDataError, match="column 'toxic' has 1 empty labels \\(CSV lines 3\\)"):
        read_guard_csv(path)


def test_no_label_columns_lists_the_layouts(tmp_path: Path):
    path = _write(tmp_path, "text,score\na,3\n")
    with pytest.raises(GuardDataError, match="no label columns: expected one 0/1 column per category"):
        read_guard_csv(path)


def test_no_text_column_says_text_column(tmp_path: Path):
    path = _write(tmp_path, "body,toxic\na,1\n")
    with pytest.raises(GuardDataError, match="no text column .* name it with --text-column"):
        read_guard_csv(path)
    assert read_guard_csv(path, text_column="body").texts == ["a"]


def test_label_map_errors(tmp_path: Path):
    path = _write(tmp_path, "text,class\na,1\n")
    with pytest.raises(SourceSpecError, match="unknown category 'spam'"):
        LabelRule.parse("spam=class:1")
    with pytest.raises(SourceSpecError, match="is not CATEGORY=COLUMN"):
        LabelRule.parse("toxicity")
    with pytest.raises(GuardDataError, match="no column 'label'"):
        read_guard_csv(path, label_map=[LabelRule.parse("toxic=label")])
