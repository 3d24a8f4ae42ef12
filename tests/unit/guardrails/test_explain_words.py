"""Words for explanations: offsets into the original text (unicode, punctuation, repeats), masking."""

from __future__ import annotations

import pytest

from fairgate.guardrails.word_spans import WordSpan, mask_words, split_words


def spans(text: str) -> list[tuple[int, int, str]]:
    found = [(w.start, w.end, w.word) for w in split_words(text)]
    for start, end, word in found:
        assert text[start:end] == word  # the contract every case below relies on
    return found


def test_punctuation_is_never_a_word_and_offsets_skip_it() -> None:
    assert spans("You idiot, you... IDIOT!!!") == [
        (0, 3, "You"),
        (4, 9, "idiot"),
        (11, 14, "you"),
        (18, 23, "IDIOT"),
    ]
    assert spans("?!... -- ,") == []
    assert spans("") == []


def test_repeated_words_each_get_their_own_occurrence() -> None:
    text = "kill kill, KILL"
    assert [(s, e) for s, e, _ in spans(text)] == [(0, 4), (5, 9), (11, 15)]


def test_unicode_offsets_are_code_points_of_the_original() -> None:
    # Precomposed and decomposed é are one word each; an astral emoji counts as one code point,
    # so the words after it keep the right offsets.
    text = "café cafe\u0301 😂 naïve Ünïcödé"
    assert spans(text) == [
        (0, 4, "café"),
        (5, 10, "cafe\u0301"),
        (11, 12, "😂"),
        (13, 18, "naïve"),
        (19, 26, "Ünïcödé"),
    ]


def test_words_joined_inside_stay_one_word() -> None:
    text = "you're a well-known id\u200biot -- 'quoted'"
    assert [w for _, _, w in spans(text)] == ["you're", "a", "well-known", "id\u200biot", "quoted"]


def test_mentions_hashtags_urls_and_emoji_are_units() -> None:
    text = "@Bob_1 #StayHome see https://x.com/kill?a=1, and 🖕🏽 👨\u200d👩\u200d👧 ok"
    assert [w for _, _, w in spans(text)] == [
        "@Bob_1",
        "#StayHome",
        "see",
        "https://x.com/kill?a=1",  # the trailing comma is prose, not the link
        "and",
        "🖕🏽",  # with its skin tone
        "👨\u200d👩\u200d👧",  # one joined sequence
        "ok",
    ]
    # An e-mail address is not a mention: the @ follows a word character.
    assert [w for _, _, w in spans("mail a@b.com")] == ["mail", "a", "b", "com"]


def test_mask_removes_exactly_the_spans() -> None:
    text = "you idiot, you IDIOT!"
    words = split_words(text)
    assert mask_words(text, [words[1]]) == "you , you IDIOT!"
    assert mask_words(text, [words[3], words[1]]) == "you , you !"  # any order
    assert mask_words(text, []) == text


def test_mask_refuses_overlapping_spans() -> None:
    with pytest.raises(ValueError, match="overlaps the previous one; pass spans from split_words"):
        mask_words("abcdef", [WordSpan(0, 4, "abcd"), WordSpan(2, 6, "cdef")])
