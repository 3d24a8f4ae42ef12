"""Mentions: whole words, spans into the original text, longest phrase per axis, a form each."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairgate.guardrails.groups import GroupResolver
from fairgate.guardrails.groups import Lexicon as LexiconFromGroups
from fairgate.guardrails.identity import (
    CounterfactualSwapper,
    Lexicon,
    LexiconError,
    UnknownGroupError,
)
from fairgate.guardrails.policy import GroupsPolicy, PolicyError


@pytest.fixture(scope="module")
def swapper() -> CounterfactualSwapper:
    return CounterfactualSwapper()


def spans(swapper: CounterfactualSwapper, text: str) -> list[tuple[str, str, str, str]]:
    return [(m.surface, m.group, m.axis, m.form) for m in swapper.find_mentions(text)]


def test_lexicon_is_still_importable_from_groups() -> None:
    assert LexiconFromGroups is Lexicon


def test_transgender_is_a_gender_identity() -> None:
    lexicon = Lexicon.from_yaml()
    assert lexicon.axis_of("transgender") == "gender"
    assert "transgender" not in lexicon.terms["sexual_orientation"]


@pytest.mark.parametrize("text", ["trans fat", "transatlantic flights", "a trans-Pacific route", "Trans Am"])
def test_trans_alone_matches_nothing(swapper: CounterfactualSwapper, text: str) -> None:
    resolver = GroupResolver(policy=GroupsPolicy(source="identity_terms", allowed=("transgender",)))
    assert resolver.resolve_one(text) == ("none",)
    assert swapper.find_mentions(text) == []


@pytest.mark.parametrize("text", ["trans women", "a trans person", "Trans folks", "the trans community"])
def test_trans_in_a_people_phrase_is_transgender(swapper: CounterfactualSwapper, text: str) -> None:
    resolver = GroupResolver(policy=GroupsPolicy(source="identity_terms", allowed=("transgender",)))
    assert "transgender" in resolver.resolve_one(text)
    assert [m.group for m in swapper.find_mentions(text)] == ["transgender"]


@pytest.mark.parametrize(
    "text",
    ["Merry Christmas", "the manager", "I love Germany", "transatlantic", "Islamabad", "asiana airlines", "gaily"],
)
def test_no_mention_inside_other_words(swapper: CounterfactualSwapper, text: str) -> None:
    assert swapper.find_mentions(text) == []


def test_spans_index_the_original_text(swapper: CounterfactualSwapper) -> None:
    text = "Two  Muslims\u2019 views,\tthen NON-BINARY folks and a Jew's hat."
    mentions = swapper.find_mentions(text)
    assert [text[m.start : m.end] for m in mentions] == [m.surface for m in mentions]
    assert [m.surface for m in mentions] == ["Muslims", "NON-BINARY folks", "Jew"]


def test_longest_phrase_wins_within_an_axis(swapper: CounterfactualSwapper) -> None:
    assert spans(swapper, "a trans woman") == [("trans woman", "transgender", "gender", "noun")]
    assert spans(swapper, "a transgender woman") == [("transgender woman", "transgender", "gender", "noun")]


def test_axes_overlap_so_either_can_be_swapped(swapper: CounterfactualSwapper) -> None:
    assert spans(swapper, "Black women vote") == [
        ("Black women", "black", "ethnicity", "plural"),
        ("women", "female", "gender", "plural"),
    ]


def test_punctuation_splits_a_phrase(swapper: CounterfactualSwapper) -> None:
    assert spans(swapper, "The car is black. People like it.") == []


@pytest.mark.parametrize(
    ("text", "surface", "form"),
    [
        ("I met a Muslim.", "Muslim", "noun"),
        ("a Muslim woman", "Muslim", "adj"),
        ("She is Muslim.", "Muslim", "adj"),
        ("As a proud Muslim, I agree", "Muslim", "noun"),
        ("a Muslim who prays", "Muslim", "noun"),
        ("a Muslim prays here", "Muslim", "noun"),
        ("Christian and Muslim leaders", "Christian", "adj"),
        ("a Christian and a Jew", "Christian", "noun"),
        ("the Muslim-owned shop", "Muslim", "adj"),
        ("a Muslim's view", "Muslim", "noun"),
        ("Muslims pray", "Muslims", "plural"),
        ("the Muslims' rights", "Muslims", "plural"),
        ("women's rights", "women", "plural"),
        ("Jewish people", "Jewish people", "plural"),
        ("a gay person", "gay person", "noun"),
        ("Islam is old", "Islam", "belief"),
        ("the elderly", "elderly", "plural"),
        ("he is openly gay.", "gay", "adj"),
    ],
)
def test_form_comes_from_the_word_and_its_neighbours(
    swapper: CounterfactualSwapper, text: str, surface: str, form: str
) -> None:
    found = {m.surface: m.form for m in swapper.find_mentions(text)}
    assert found[surface] == form


def test_phrase_words_may_be_joined_by_hyphen_slash_or_spaces(swapper: CounterfactualSwapper) -> None:
    assert [m.group for m in swapper.find_mentions("non-binary, non  binary, they/them")] == ["nonbinary"] * 3


def test_unknown_group_and_axis_name_the_choices(swapper: CounterfactualSwapper) -> None:
    with pytest.raises(UnknownGroupError, match=r"unknown group 'martian'; use one of \['female'"):
        swapper.swap("a Muslim", target_group="martian")
    with pytest.raises(UnknownGroupError, match=r"unknown axis \['caste'\]; use some of \['gender'"):
        swapper.counterfactuals("a Muslim", axes=["caste"])


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "lex.yaml"
    path.write_text(body, encoding="utf-8")
    return path


PETS = "axes:\n  pets:\n    cat: [cat person, cat people, felinophile]\n    dog: [dog person, dog people]\n"


def test_a_small_lexicon_swaps_with_its_own_forms(tmp_path: Path) -> None:
    forms = "forms:\n  cat: {adj: felinophile, noun: cat person, plural: cat people}\n"
    forms += "  dog: {adj: dog person, noun: dog person, plural: dog people}\n"
    swapper = CounterfactualSwapper(lexicon=Lexicon.from_yaml(_write(tmp_path, PETS + forms)))
    assert swapper.swap("A cat person's view", target_group="dog") == "A dog person's view"


def test_swapper_needs_a_form_for_every_group(tmp_path: Path) -> None:
    forms = "forms:\n  cat: {adj: felinophile, noun: cat person, plural: cat people}\n"
    lexicon = Lexicon.from_yaml(_write(tmp_path, PETS + forms))
    with pytest.raises(LexiconError, match=r"group 'dog' \(axis 'pets'\) has no 'adj' form.*add it under forms"):
        CounterfactualSwapper(lexicon=lexicon)


def test_swapper_refuses_a_form_that_would_not_resolve(tmp_path: Path) -> None:
    forms = "forms:\n  cat: {adj: felinophile, noun: cat person, plural: cat people}\n"
    forms += "  dog: {adj: canine, noun: dog person, plural: dog people}\n"
    lexicon = Lexicon.from_yaml(_write(tmp_path, PETS + forms))
    with pytest.raises(LexiconError, match=r"forms.dog.adj: 'canine' is not a mention of 'dog'.*axes.pets.dog"):
        CounterfactualSwapper(lexicon=lexicon)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("forms:\n  bird: {adj: avian}\n", r"forms.bird: no such group in axes"),
        ("forms:\n  cat: {colour: black}\n", r"forms.cat: unknown form\(s\) \['colour'\]"),
        ("term_forms:\n  noun: [hamster]\n", r"term_forms.noun: 'hamster' is not a term in axes"),
        ("word_pairs:\n  pets:\n    groups: [cat, dog]\n    rows: [[cat person]]\n", r"needs one word per group"),
        ("forms: [oops\n", r"is not valid YAML"),
    ],
)
def test_malformed_sections_name_the_fix(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(LexiconError, match=message):
        Lexicon.from_yaml(_write(tmp_path, PETS + extra))


def test_lexicon_errors_are_policy_errors() -> None:
    """``groups.lexicon`` is a policy key: callers catching PolicyError keep working."""
    assert issubclass(LexiconError, PolicyError)
