"""Groups come from the request and/or whole-word identity terms; names stay bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairgate.guardrails.groups import GroupResolver, Lexicon
from fairgate.guardrails.policy import GroupsPolicy, Policy, PolicyError

ALL = Policy.default().groups.allowed


def resolver(source: str = "identity_terms", allowed: tuple[str, ...] = ALL) -> GroupResolver:
    return GroupResolver(policy=GroupsPolicy(source=source, allowed=allowed))


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        ("The Christians and the Muslims met", ("christian", "muslim")),
        ("CHRISTIAN values", ("christian",)),
        ("women's rights", ("female",)),
        ("a Non-Binary person", ("nonbinary",)),
        ("non  binary", ("nonbinary",)),
        ("the old man", ("male", "old")),  # one text, several groups, across axes
        ("a trans woman", ("female", "transgender")),
        ("Black people and white people", ("black", "white")),
        ("Mexicans", ("hispanic",)),
        ("two gay men", ("gay", "male")),
        ("Jews", ("jewish",)),
        ("he is deaf", ("disabled",)),
    ],
)
def test_identity_terms_whole_word_case_insensitive_plural(text: str, groups: tuple[str, ...]) -> None:
    assert resolver().resolve_one(text) == groups


@pytest.mark.parametrize(
    "text",
    [
        "Merry Christmas everyone",  # contains "christ", not "christian"
        "I love Germany",  # a country, not a group term
        "Germans",  # nationalities are not mapped to 'white'
        "the manager",
        "a black car on an old road",  # colour and age words need a person noun
        "the Romanian mansion",  # 'man' inside words
        "asiana airlines",  # 'asian' inside a word
        "she said he was fine",  # pronouns are not identity terms
        "straight line, turn left",
        "transit strategy",  # 'trans' inside words
        "Islamabad",  # 'islam' inside a word
        "hindustan",
        "gaily decorated",
    ],
)
def test_words_that_merely_contain_a_term_do_not_match(text: str) -> None:
    assert resolver().resolve_one(text) == ("none",)


def test_request_source_bounds_names() -> None:
    r = resolver(source="request", allowed=("female", "male"))
    assert r.resolve(["a", "b", "c", "d", "e"], ["Female", " male ", "martian", None, ""]) == [
        ("female",),
        ("male",),
        ("other",),
        ("none",),
        ("none",),
    ]
    # request source ignores the text
    assert r.resolve_one("the women", None) == ("none",)
    # a list of request groups
    assert r.resolve_one("x", ["female", "male", "zz"]) == ("female", "male", "other")


def test_both_is_the_union_and_terms_outside_allowed_are_other() -> None:
    r = resolver(source="both", allowed=("female", "male", "nonbinary"))
    assert r.resolve_one("the Muslims", "female") == ("female", "other")
    assert r.resolve_one("the man", "female") == ("female", "male")
    assert r.resolve_one("nothing here", None) == ("none",)


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="got 2 texts but 1 groups; pass one group"):
        resolver().resolve(["a", "b"], ["female"])


def test_custom_lexicon_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "lex.yaml"
    path.write_text("axes:\n  pets:\n    catlovers: [cat person, felinophile]\n")
    r = GroupResolver(policy=GroupsPolicy(source="identity_terms", allowed=("catlovers",), lexicon=str(path)))
    assert r.resolve_one("A Cat-Person's view") == ("catlovers",)
    assert r.resolve_one("a category") == ("none",)
    with pytest.raises(PolicyError, match=r"groups.lexicon: file '.*missing.yaml' not found; fix the path"):
        Lexicon.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "flat.yaml").write_text("female: [woman]\n")
    with pytest.raises(PolicyError, match="has no 'axes' mapping"):
        Lexicon.from_yaml(tmp_path / "flat.yaml")


def test_bundled_lexicon_uses_the_contract_vocabulary() -> None:
    """CONTRACTS section 5: the lexicon's groups are exactly the shared group names."""
    lexicon = Lexicon.from_yaml()
    assert set(lexicon.terms) == {
        "gender",
        "religion",
        "ethnicity",
        "sexual_orientation",
        "disability",
        "age",
    }
    assert set(lexicon.groups) == set(ALL)
