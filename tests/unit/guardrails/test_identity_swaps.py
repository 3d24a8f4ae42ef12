"""Counterfactual swaps: well-formed text about another group that resolves to that group."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairgate.guardrails.identity import Counterfactual, CounterfactualSwapper, Lexicon

LEXICON = Lexicon.from_yaml()
SWAPPER = CounterfactualSwapper(lexicon=LEXICON)
SWAPPABLE = [(axis, group) for axis, groups in LEXICON.terms.items() if len(groups) > 1 for group in groups]


def groups_on(text: str, axis: str) -> set[str]:
    return {m.group for m in SWAPPER.find_mentions(text) if m.axis == axis}


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [
        # plural noun, sentence-start capital, proper adjective capital mid-sentence
        ("Muslims are welcome here.", "atheist", "Atheists are welcome here."),
        ("I met the atheists.", "muslim", "I met the Muslims."),
        ("I met the Muslims.", "atheist", "I met the atheists."),
        # singular noun with its article fixed both ways
        ("I met a Muslim.", "atheist", "I met an atheist."),
        ("She is an Arab.", "hispanic", "She is a Hispanic person."),
        ("A Muslim prays here.", "atheist", "An atheist prays here."),
        # adjective before a noun
        ("a Muslim doctor", "jewish", "a Jewish doctor"),
        ("an Asian American doctor", "white", "a Caucasian doctor"),
        # person phrases keep their noun
        ("Black people vote.", "asian", "Asian people vote."),
        ("an old man", "young", "a young man"),
        ("Jewish people are kind", "muslim", "Muslim people are kind"),
        # gendered word pairs, and the neutral noun for groups outside the pairs
        ("my mother and my sister", "male", "my father and my brother"),
        ("my mother", "nonbinary", "my nonbinary parent"),
        ("Ladies first", "male", "Gentlemen first"),
        ("a nonbinary parent", "female", "a mother"),
        # possessives, including an apostrophe that moves with the plural's ending
        ("the women's team", "male", "the men's team"),
        ("the women's team", "nonbinary", "the nonbinary people's team"),
        ("the girls' team", "transgender", "the transgender children's team"),
        ("the Muslims' rights", "jewish", "the Jews' rights"),
        ("a Muslim's view", "jewish", "a Jewish person's view"),
        # case styles
        ("THE MUSLIMS ARE HERE", "atheist", "THE ATHEISTS ARE HERE"),
        ("A MUSLIM IS HERE", "atheist", "AN ATHEIST IS HERE"),
        ("honestly muslims in my class are so kind", "jewish", "honestly jews in my class are so kind"),
        ("I met muslims at the market", "christian", "I met christians at the market"),
        # two mentions of one group: both swapped the same way
        ("A Muslim woman and a Muslim.", "atheist", "An atheist woman and an atheist."),
        # overlapping terms: the longest phrase is the mention
        ("a trans woman", "nonbinary", "a nonbinary person"),
        ("a trans woman", "female", "a woman"),
        # a religion itself
        ("Islam is a religion.", "jewish", "Judaism is a religion."),
        # predicate adjective
        ("He is openly gay.", "straight", "He is openly heterosexual."),
    ],
)
def test_swap_writes_the_target_in_the_same_form(text: str, target: str, expected: str) -> None:
    assert SWAPPER.swap(text, target_group=target) == expected


@pytest.mark.parametrize(
    ("axis", "target", "expected"),
    [
        ("ethnicity", "asian", "Asian women vote."),
        ("ethnicity", "white", "White women vote."),
        ("gender", "male", "Black men vote."),
        ("gender", "nonbinary", "Nonbinary Black people vote."),
    ],
)
def test_ethnicity_and_gender_phrase_swaps_on_either_axis_and_keeps_the_other(
    axis: str, target: str, expected: str
) -> None:
    variants = {c.target_group: c for c in SWAPPER.counterfactuals("Black women vote.", axes=[axis])}
    assert variants[target].text == expected
    other = "gender" if axis == "ethnicity" else "ethnicity"
    kept = {"gender": {"female"}, "ethnicity": {"black"}}[other]
    assert groups_on(expected, other) == kept


def test_old_lady_to_a_nonbinary_person_keeps_her_age() -> None:
    assert SWAPPER.swap("An old lady waved.", target_group="nonbinary") == "A nonbinary old person waved."
    assert groups_on("A nonbinary old person waved.", "age") == {"old"}


def test_two_groups_of_one_axis_are_both_swapped_to_each_other_group() -> None:
    variants = SWAPPER.counterfactuals("Muslims and Christians pray.", axes=["religion"])
    assert [c.target_group for c in variants] == ["jewish", "hindu", "buddhist", "atheist"]
    assert variants[0] == Counterfactual(
        text="Jews and Jews pray.", target_group="jewish", source_groups=("christian", "muslim"), axis="religion"
    )


@pytest.mark.parametrize(
    "text", ["Merry Christmas from the manager", "transatlantic trans fat", "I love Germany", "a black car"]
)
def test_text_without_mentions_has_no_variants(text: str) -> None:
    assert SWAPPER.counterfactuals(text) == []
    assert SWAPPER.swap(text, target_group="muslim") is None


def test_words_containing_terms_are_left_alone_around_a_swap() -> None:
    text = "Merry Christmas, the manager said to the Muslims on the transatlantic flight."
    assert SWAPPER.swap(text, target_group="hindu") == (
        "Merry Christmas, the manager said to the Hindus on the transatlantic flight."
    )


def test_nothing_outside_the_mention_changes() -> None:
    text = "  Hey!!  the Muslims,\tthe end\u2026  "
    assert SWAPPER.swap(text, target_group="buddhist") == "  Hey!!  the Buddhists,\tthe end\u2026  "


def test_swap_to_a_group_already_named_leaves_its_mentions() -> None:
    assert SWAPPER.swap("Muslims and Christians pray.", target_group="christian") == "Christians and Christians pray."
    assert SWAPPER.swap("Christians pray.", target_group="christian") is None


def test_variants_come_in_lexicon_order_and_respect_the_limits() -> None:
    text = "A Muslim woman spoke."
    variants = SWAPPER.counterfactuals(text)
    assert [(c.axis, c.target_group) for c in variants] == [
        ("gender", "male"),
        ("gender", "nonbinary"),
        ("gender", "transgender"),
        ("religion", "christian"),
        ("religion", "jewish"),
        ("religion", "hindu"),
        ("religion", "buddhist"),
        ("religion", "atheist"),
    ]
    assert SWAPPER.counterfactuals(text) == variants
    assert SWAPPER.counterfactuals(text, max_variants=2) == variants[:2]
    assert SWAPPER.counterfactuals(text, axes=["religion"]) == variants[3:]
    with pytest.raises(ValueError, match="max_variants must be None or >= 0, got -1"):
        SWAPPER.counterfactuals(text, max_variants=-1)


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


TEMPLATES = {
    "plural": lambda f: f"{f['plural']} live on our street.",
    "noun": lambda f: f"My neighbour is {_with_article(f['noun'])}.",
    "adj": lambda f: f"The {f['adj']} students met today.",
}


@pytest.mark.parametrize("kind", sorted(TEMPLATES))
@pytest.mark.parametrize(("axis", "source"), SWAPPABLE)
def test_every_group_swaps_to_every_other_group_of_its_axis(axis: str, source: str, kind: str) -> None:
    text = TEMPLATES[kind](LEXICON.forms[source])
    assert groups_on(text, axis) == {source}
    variants = SWAPPER.counterfactuals(text, axes=[axis])
    assert [c.target_group for c in variants] == [g for g in LEXICON.terms[axis] if g != source]
    for variant in variants:
        # the key property: the swapped text resolves to the target, and no longer to the source
        assert groups_on(variant.text, axis) == {variant.target_group}, variant.text
        assert variant.source_groups == (source,)
        assert not re.search(r"\ba [aeiou]|\ban [^aeiou\W]", variant.text, re.IGNORECASE), variant.text


SAFE_WORDS = st.sampled_from(["we", "saw", "today", "very", "kind", "near", "the", "park", "really", "lovely"])
PHRASES = st.sampled_from(
    [(axis, group, LEXICON.forms[group][kind]) for axis, group in SWAPPABLE for kind in ("plural", "adj")]
)


@settings(max_examples=200, deadline=None)
@given(before=st.lists(SAFE_WORDS, max_size=4), after=st.lists(SAFE_WORDS, max_size=4), phrase=PHRASES)
def test_a_swap_changes_only_the_mention_and_resolves_to_its_target(
    before: list[str], after: list[str], phrase: tuple[str, str, str]
) -> None:
    axis, source, words = phrase
    prefix = " ".join(["Yesterday", *before])
    suffix = " ".join(["students", *after]) + "."
    text = f"{prefix} {words} {suffix}"
    for variant in SWAPPER.counterfactuals(text, axes=[axis]):
        assert variant.text.startswith(prefix + " ")
        assert variant.text.endswith(" " + suffix)
        assert groups_on(variant.text, axis) == {variant.target_group}
        assert source not in groups_on(variant.text, axis)
