"""The bundled data stays what its READMEs promise: balanced, deduplicated, complete."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[3] / "models" / "data"
GROUPS = {
    "female", "male", "nonbinary", "christian", "muslim", "jewish", "hindu", "buddhist",
    "atheist", "black", "white", "asian", "hispanic", "arab", "indigenous", "gay", "lesbian",
    "bisexual", "straight", "transgender", "disabled", "young", "old",
}


def test_reviews_are_balanced_deduplicated_and_large_enough() -> None:
    reviews = pd.read_csv(DATA / "sentiment" / "reviews.csv")
    assert len(reviews) >= 1000
    counts = reviews["label"].value_counts()
    assert set(counts.index) == {"negative", "positive"}
    assert counts["negative"] == counts["positive"]
    assert not reviews["text"].str.lower().str.strip().duplicated().any()


def test_identity_set_has_every_group_once_per_template_and_is_non_toxic() -> None:
    identity = pd.read_csv(DATA / "identity" / "identity_sentences.csv")
    assert (identity["toxic"] == 0).all()
    per_template = identity.groupby("template_id")["group"].apply(sorted)
    for template_id, groups in per_template.items():
        assert groups == sorted(GROUPS), f"template {template_id} lacks groups"


def test_toxicity_csv_matches_its_hand_written_parts() -> None:
    path = DATA / "toxicity" / "assemble.py"
    spec = importlib.util.spec_from_file_location("assemble_toxicity", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0


def _load_script(relative: str, name: str):  # -> a module
    spec = importlib.util.spec_from_file_location(name, DATA / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_identity_eval_stays_apart_from_training_by_template() -> None:
    # A training line that shares a template's frame makes the identity figures flattering
    # (session 6 found "human and should be treated" in both); --check fails on any clash
    # and on a stale CSV.
    assert _load_script("identity_eval/make_identity_eval.py", "make_identity_eval").main(["--check"]) == 0


def test_a_hashtag_first_row_is_data_and_a_hash_space_line_a_comment(tmp_path: Path) -> None:
    assemble = _load_script("toxicity/assemble.py", "assemble_toxicity_rows")
    part = tmp_path / "benign_tags.txt"
    part.write_text("# kind: tags\n# labels: none\n#TBT to that road trip\n#\n# a comment\nplain row\n", encoding="utf-8")
    assert [row["text"] for row in assemble.read_part(part)] == ["#TBT to that road trip", "plain row"]
