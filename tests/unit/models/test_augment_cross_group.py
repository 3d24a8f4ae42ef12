"""Cross-group copies of toxic rows: well formed, toxic rows only, labels kept, one family."""

from __future__ import annotations

import numpy as np
import pytest

from fairgate.guardrails.identity import CounterfactualSwapper
from fairgate.guardrails.normalize import TextNormalization
from fairgate.models.guard._augment import augment_training_data, cross_group_copies
from fairgate.models.guard._csv import GuardDataset


@pytest.fixture(scope="module")
def swapper() -> CounterfactualSwapper:
    return CounterfactualSwapper()


def _copies(swapper: CounterfactualSwapper, text: str, count: int = 4, seed: int = 0) -> list[str]:
    return cross_group_copies(text, swapper, rng=np.random.default_rng(seed), count=count)


def test_every_copy_names_exactly_one_other_group_in_the_mentions_place(swapper: CounterfactualSwapper) -> None:
    text = "Muslims are vermin and Muslims should leave."
    copies = _copies(swapper, text, count=22)
    assert len(copies) == 22, "one copy per other group when asked for all of them"
    targets = set()
    for copy in copies:
        groups = {m.group for m in swapper.find_mentions(copy)}
        assert len(groups) == 1 and "muslim" not in groups, copy
        targets |= groups
        assert copy.endswith(" should leave.") and " are vermin and " in copy, copy
    assert len(targets) == 22, "targets are drawn without replacement from every other group"
    assert {"disabled", "old", "young", "female"} <= targets, "groups of other axes are targets"


def test_case_follows_the_replaced_words(swapper: CounterfactualSwapper) -> None:
    assert all(c.isupper() for c in _copies(swapper, "MUSLIMS ARE RATS"))
    for copy in _copies(swapper, "Jews are vermin."):
        assert copy[0].isupper(), copy
    # mid-sentence, a phrase keeps the lexicon's own case ("deaf people", "Muslims")
    for copy in _copies(swapper, "i hate the jews so much", count=22):
        phrase = copy.removeprefix("i hate the ").removesuffix(" so much")
        assert phrase in {p for g in swapper.groups for p in swapper.plural_phrases(g)}, copy


@pytest.mark.parametrize(
    "text",
    [
        "Muslims' money is dirty",  # possessive: "deaf people'" would be malformed
        "Black women are trash",  # overlapping mentions on two axes
        "Muslims and Jews are rats",  # two groups: which one to replace is ambiguous
        "A Muslim stole my bike",  # a singular noun: "a deaf people" would be malformed
        "You are an idiot",  # no group at all
    ],
)
def test_texts_a_plural_phrase_cannot_replace_cleanly_get_no_copy(
    swapper: CounterfactualSwapper, text: str
) -> None:
    assert _copies(swapper, text) == []


def test_the_same_seed_gives_the_same_copies(swapper: CounterfactualSwapper) -> None:
    text = "Hindus are parasites"
    assert _copies(swapper, text, seed=3) == _copies(swapper, text, seed=3)
    assert _copies(swapper, text, seed=3) != _copies(swapper, text, seed=4)


def test_every_listed_plural_resolves_to_its_group(swapper: CounterfactualSwapper) -> None:
    for group in swapper.groups:
        phrases = swapper.plural_phrases(group)
        assert phrases, group
        for phrase in phrases:
            mentions = swapper.find_mentions(f"{phrase} are here")
            assert any(m.group == group and m.form == "plural" for m in mentions), (group, phrase)


def _dataset(rows: list[tuple[str, float]]) -> GuardDataset:
    targets = np.zeros((len(rows), 6), dtype=np.float32)
    targets[:, 0] = [toxic for _, toxic in rows]
    targets[:, 5] = targets[:, 0]
    return GuardDataset(
        texts=[text for text, _ in rows],
        targets=targets,
        mask=np.ones((len(rows), 6), dtype=np.float32),
        layout="jigsaw",
        columns={},
    )


def test_only_toxic_rows_are_copied_across_groups_and_keep_their_labels(swapper: CounterfactualSwapper) -> None:
    data = _dataset([("Muslims are vermin", 1.0), ("Muslims pray at the mosque", 0.0), ("nice day", 0.0)])
    out = augment_training_data(
        data,
        swapper=None,
        variants_per_text=0,
        noise_fraction=0.0,
        normalizer=TextNormalization.none(),
        seed=0,
        cross_group=swapper,
        cross_group_variants=3,
    )
    added = out.data.texts[len(data) :]
    assert len(added) == 3 and out.summary["cross_group_copies"] == 3
    assert out.summary["training_rows"] == 6
    assert all(text.endswith(" are vermin") for text in added), added
    assert (out.data.targets[len(data) :] == data.targets[0]).all(), "copies inherit the toxic labels"
    assert out.families.tolist() == [0, -1, -1, 0, 0, 0], "a text and its copies form one family"


def test_zero_cross_group_variants_adds_nothing(swapper: CounterfactualSwapper) -> None:
    data = _dataset([("Muslims are vermin", 1.0)])
    out = augment_training_data(
        data,
        swapper=None,
        variants_per_text=0,
        noise_fraction=0.0,
        normalizer=TextNormalization.none(),
        seed=0,
        cross_group=swapper,
        cross_group_variants=0,
    )
    assert out.data.texts == data.texts and out.summary["cross_group_copies"] == 0
