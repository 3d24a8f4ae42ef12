"""The texts and request items every phase sends."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from loadtests._texts import (
    SKEWED_GROUP_WEIGHTS,
    TextCorpus,
    TextSourceError,
    batched,
    load_corpus,
    make_items,
)

CORPUS = TextCorpus(benign=("a", "b", "c"), toxic=("x",), benign_source="test", toxic_source="test")


def test_items_cycle_the_benign_texts_in_order_for_every_phase() -> None:
    items = make_items(CORPUS, 7, seed=1)
    assert [item["text"] for item in items] == ["a", "b", "c", "a", "b", "c", "a"]
    assert items == make_items(CORPUS, 7, seed=1)


def test_toxic_fraction_replaces_about_that_share() -> None:
    items = make_items(CORPUS, 2000, toxic_fraction=0.25, seed=2)
    share = sum(item["text"] == "x" for item in items) / len(items)
    assert 0.21 < share < 0.29


def test_skewed_groups_follow_their_weights_and_sometimes_send_none() -> None:
    items = make_items(CORPUS, 5000, group_weights=SKEWED_GROUP_WEIGHTS, seed=3)
    counts = Counter(item.get("group") for item in items)
    assert counts["female"] > 2 * counts["male"] > 4 * counts["nonbinary"]
    assert counts[None] > 0 and counts["martian"] > 0


def test_toxic_traffic_without_toxic_texts_is_refused_with_the_fix() -> None:
    corpus = TextCorpus(benign=("a",), toxic=(), benign_source="t", toxic_source=None)
    with pytest.raises(TextSourceError, match="toxic_fraction=0"):
        make_items(corpus, 3, toxic_fraction=0.5)


def test_batched_keeps_order_and_the_short_tail() -> None:
    assert [len(b) for b in batched([{"text": str(i)} for i in range(5)], 2)] == [2, 2, 1]


def test_corpus_falls_back_to_the_bundled_reviews(tmp_path: Path) -> None:
    reviews = tmp_path / "reviews.csv"
    reviews.write_text('text,label\n"good, really",positive\nbad,negative\n', encoding="utf-8")
    toxicity = tmp_path / "toxicity.csv"
    toxicity.write_text("text,toxicity\nfine words,0\nnasty words,1\n", encoding="utf-8")
    corpus = load_corpus(sst2_path=tmp_path / "absent.tsv", reviews_path=reviews, toxicity_path=toxicity)
    assert corpus.benign == ("good, really", "bad")
    assert corpus.toxic == ("nasty words",)
    assert "bundled reviews" in corpus.benign_source


def test_sst2_is_read_without_csv_quoting(tmp_path: Path) -> None:
    sst2 = tmp_path / "dev.tsv"
    sst2.write_text('label\tsentence\n1\t" a quoted " start .\n0\tplain .\n', encoding="utf-8")
    corpus = load_corpus(
        sst2_path=sst2, reviews_path=tmp_path / "none.csv", toxicity_path=tmp_path / "none.csv"
    )
    assert corpus.benign == ('" a quoted " start .', "plain .")


def test_no_text_source_names_both_paths(tmp_path: Path) -> None:
    with pytest.raises(TextSourceError, match="dev.tsv.*reviews.csv"):
        load_corpus(sst2_path=tmp_path / "dev.tsv", reviews_path=tmp_path / "reviews.csv")
