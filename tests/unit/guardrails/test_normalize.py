"""The text normalisation shared by training and serving: each rule, its guarantees, its manifest."""

from __future__ import annotations

import json

import pytest

from fairgate.guardrails.normalize import NORMALIZATION_VERSION, NormalizationError, TextNormalization

SOCIAL = TextNormalization.social()

DAVIDSON_LIKE = [
    "School Schoo Scho Sch Sc S St Sta Stay Stay h Stay ho Stay hom Stay home",
    "@M_A_Larson @SteveStreza You're saying zebras are goth?",
    "!!! RT @mayasolovely: As a woman you shouldn't complain about cleaning up your house. &amp; as a man...",
    "RT @user: soooooo good &amp;amp; #StayHome2020 https://t.co/abc www.x.com/y",
    "I love it😂😂😂 🖕🏿 ❤️ 🏳️‍🌈 🇺🇸 &#128514; ｆｕｌｌ id\u200biot 1000000 wait.......",
    "' If you get yo girl took &#1041204; Be mad at her , she does .",
    "AT&T &ampersand; #1 C# mail me at a@b.com\n\n  ok",
]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("@M_A_Larson @SteveStreza You're saying zebras are goth?", "@user You're saying zebras are goth?"),
        ("hi @bob and @alice", "hi @user and @user"),
        ("mail a@b.com", "mail a@b.com"),  # an e-mail address is not a mention
    ],
)
def test_mentions_become_one_user_placeholder(raw: str, expected: str) -> None:
    assert SOCIAL.apply_one(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("!!! RT @mayasolovely: As a woman", "!! As a woman"),
        ("RT @a: RT @b: quoted", "quoted"),
        ("RT RT @a: twice", "twice"),
        ("ART @a: not a marker", "ART @user: not a marker"),
    ],
)
def test_retweet_markers_are_removed_anywhere(raw: str, expected: str) -> None:
    assert SOCIAL.apply_one(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("watch https://t.co/AbC123 now", "watch http now"),
        ("see http://x.com/a?b=c&amp;d=e.", "see http"),
        ("go to www.example.org/page", "go to http"),
        ("WWW.SHOUT.COM", "http"),
    ],
)
def test_urls_become_the_http_word_piece(raw: str, expected: str) -> None:
    assert SOCIAL.apply_one(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("you &amp; me", "you & me"),
        ("double &amp;amp; escaped", "double & escaped"),
        ("&lt;3 &quot;hi&quot; &#8220;q&#8221; &#x1F602;", '<3 "hi" “q” face with tears of joy'),
        ("AT&T and R&D stay", "AT&T and R&D stay"),
        ("&ampersand; is no entity", "&ampersand; is no entity"),
    ],
)
def test_html_entities_are_unescaped_only_when_whole(raw: str, expected: str) -> None:
    assert SOCIAL.apply_one(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("#StayHome2020 tonight", "Stay Home 2020 tonight"),
        ("so #blessed", "so blessed"),
        ("#MAGA rally", "MAGA rally"),
        ("#BLMProtest", "BLM Protest"),
        ("#snake_case_tag", "snake case tag"),
        ("#tbt#NoFilter", "tbt No Filter"),
        ("we're #1 in C#", "we're #1 in C#"),
    ],
)
def test_hashtags_keep_their_words_split_at_camel_case(raw: str, expected: str) -> None:
    assert SOCIAL.apply_one(raw) == expected


def test_hashtags_word_mode_keeps_camel_case_joined() -> None:
    spec = TextNormalization(name="tags", hashtags="word")
    assert spec.apply_one("#StayHome now") == " StayHome  now"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("soooooo good", "soo good"),
        ("noooo!!!!!", "noo!!"),
        ("kill the good bookkeeper", "kill the good bookkeeper"),  # doubles are words
        ("1000000 dollars", "1000000 dollars"),
        ("wait..... what...", "wait... what..."),
    ],
)
def test_runs_of_three_or_more_squeeze_to_two(raw: str, expected: str) -> None:
    assert SOCIAL.apply_one(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("lol 😂😂😂", "lol face with tears of joy"),
        ("lol 😂 😂 😂", "lol face with tears of joy"),
        ("ok🖕🏿", "ok reversed hand with middle finger extended"),
        ("❤️ you", "heavy heart you"),  # "heavy black heart": black means filled, not a people
        ("🏳️‍🌈 pride", "waving flag rainbow pride"),
        ("go 🇺🇸", "go flag"),
    ],
)
def test_emoji_become_their_unicode_description(raw: str, expected: str) -> None:
    assert SOCIAL.apply_one(raw) == expected


def test_emoji_remove_mode_drops_them_and_keep_mode_leaves_them() -> None:
    assert TextNormalization(name="r", emoji="remove", whitespace=True).apply_one("nice 😂 day 🇺🇸") == "nice day"
    assert TextNormalization(name="k", whitespace=True).apply_one("nice 😂 day") == "nice 😂 day"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("id\u200biot", "idiot"),  # zero-width space used to dodge filters
        ("ｆｕｌｌ width", "full width"),
        ("𝐛𝐨𝐥𝐝 math", "bold math"),
        ("soft\u00adhyphen", "softhyphen"),
        ("private &#1041204; use", "private use"),
        ("tabs\tand\nnew  lines\u00a0nbsp ", "tabs and new lines nbsp"),
    ],
)
def test_unicode_is_cleaned_and_whitespace_collapsed(raw: str, expected: str) -> None:
    assert SOCIAL.apply_one(raw) == expected


def test_letter_games_and_casing_are_left_for_augmentation() -> None:
    game = "School Schoo Scho Sch Sc S St Sta Stay Stay h Stay ho Stay hom Stay home"
    assert SOCIAL.apply_one(game) == game
    assert SOCIAL.apply_one("STOP SHOUTING") == "STOP SHOUTING"


@pytest.mark.parametrize("raw", DAVIDSON_LIKE)
def test_applying_twice_equals_applying_once(raw: str) -> None:
    once = SOCIAL.apply_one(raw)
    assert SOCIAL.apply_one(once) == once


@pytest.mark.parametrize("raw", ["RT @someone:", "@a @b", "\u200b", "   ", "😂"])
def test_never_empty_for_a_non_empty_input(raw: str) -> None:
    out = SOCIAL.apply_one(raw)
    assert out
    assert SOCIAL.apply_one("") == ""


def test_text_that_normalises_to_nothing_comes_back_unchanged() -> None:
    assert SOCIAL.apply_one("RT @someone:") == "RT @someone:"
    assert SOCIAL.apply_one("@a @b") == "@user"


def test_apply_keeps_order_and_length() -> None:
    texts = ["soooo", "@x hi", "plain"]
    assert SOCIAL.apply(texts) == ["soo", "@user hi", "plain"]
    assert texts == ["soooo", "@x hi", "plain"], "the input list is not modified"


def test_identity_returns_texts_unchanged() -> None:
    none = TextNormalization.none()
    assert none.is_identity and not SOCIAL.is_identity
    assert none.apply(DAVIDSON_LIKE) == DAVIDSON_LIKE


def test_manifest_round_trip_gives_an_equal_spec() -> None:
    entry = json.loads(json.dumps(SOCIAL.to_manifest()))
    assert entry["name"] == "social" and entry["version"] == NORMALIZATION_VERSION
    assert entry["urls"] == "http" and entry["mentions"] == "@user" and entry["emoji"] == "describe"
    restored = TextNormalization.from_manifest(entry)
    assert restored == SOCIAL
    assert restored.apply(DAVIDSON_LIKE) == SOCIAL.apply(DAVIDSON_LIKE)


def test_absent_entry_is_the_identity() -> None:
    assert TextNormalization.from_manifest(None) == TextNormalization.none()


def test_unknown_version_names_the_fix() -> None:
    entry = {**SOCIAL.to_manifest(), "version": NORMALIZATION_VERSION + 1}
    with pytest.raises(NormalizationError, match=r"version 2, but this fairgate implements version 1.*pip install -U"):
        TextNormalization.from_manifest(entry)


def test_unknown_option_is_refused_not_ignored() -> None:
    entry = {**SOCIAL.to_manifest(), "lowercase": True}
    with pytest.raises(NormalizationError, match=r"unknown options \['lowercase'\].*rebuild the model"):
        TextNormalization.from_manifest(entry)


def test_entry_without_name_is_refused() -> None:
    with pytest.raises(NormalizationError, match="lacks 'name'"):
        TextNormalization.from_manifest({"version": 1})


def test_bad_option_values_name_the_choices() -> None:
    with pytest.raises(NormalizationError, match="emoji='translate'; use one of keep, describe, remove"):
        TextNormalization(name="x", emoji="translate")  # type: ignore[arg-type]
    with pytest.raises(NormalizationError, match="max_repeat=0"):
        TextNormalization(name="x", max_repeat=0)


def test_specs_with_equal_options_are_equal_and_hashable() -> None:
    assert TextNormalization.social() == SOCIAL
    assert len({TextNormalization.social(), SOCIAL, TextNormalization.none()}) == 2
