"""Words of a text with their character offsets, and the text with some of them masked.

Occlusion explanations (:mod:`fairgate.guardrails.explain`) mask one word at a time and
report where each word is, so a moderator's tool can highlight it. The offsets are into
the text *as the user sent it* (Python string indices, i.e. code points), never into the
normalised text the model reads: masking happens in the original text and the model
normalises the masked text as usual (``OnnxTextModel.encode``), so the explanation needs
no map between the two texts and stays right whatever the normalisation does.

What counts as one word (one unit that is masked and reported), in the order tried:

- a **URL** (``https://...``, ``www....``): the guard's normalisation turns any link into
  the word ``http``, so its parts (``www``, ``example``, ``com``) mean nothing apart;
- a **word**: word characters (letters of any script, digits, ``_``, combining marks, so
  ``café`` in either Unicode form is one word), joined by an apostrophe, hyphen or an
  invisible character between two of them (``you're``, ``well-known``, and
  ``id\\u200biot``, which the normalisation reads as ``idiot``: split, it would be two
  half-words, each with half an effect), with a leading ``@`` or ``#`` (a mention or a
  hashtag is one thing the normalisation rewrites as a whole);
- an **emoji** with its modifiers (skin tone, variation selector, joined sequences): the
  normalisation describes emoji in words, and some (a middle finger) carry the signal.

Punctuation and whitespace are never words: masking ``!`` is rarely the question and
would cost a model row each. A script written without spaces (Chinese, Japanese, Thai)
comes out as long runs, one unit per run; the explanation is coarse there.

Masking *removes* the word's characters and keeps everything around them, so two words
never join (a word is a maximal run, so its neighbours are not word characters).
:mod:`fairgate.guardrails.explain` says why removal rather than a ``[MASK]`` token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["WordSpan", "mask_words", "split_words"]

# Word characters plus combining marks (``re``'s \w has no combining marks).
_W = "[\\w\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]"
# Inside a word only: apostrophes, hyphens, and the invisible characters the guard's
# normalisation deletes (soft hyphen, zero-width space/non-joiner/joiner, word joiner, BOM).
_JOIN = "['’\\-\u00ad\u200b-\u200d\u2060\ufeff]"
# A URL ends before trailing punctuation (``see https://x.com/a, ok``: the comma is prose).
_URL = r"(?:h+t+p+s*:/+|w{3,}\.)\S*[^\s.,;:!?)\]}'\"]"
_EMOJI = "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff]"
_EMOJI_TAIL = "[\U0001f3fb-\U0001f3ff\ufe0e\ufe0f\u20e3]"
_PATTERN = (
    rf"(?i:\b{_URL})"
    rf"|(?:(?<!{_W})[@#])?{_W}+(?:{_JOIN}+{_W}+)*"
    rf"|{_EMOJI}{_EMOJI_TAIL}*(?:\u200d{_EMOJI}{_EMOJI_TAIL}*)*"
)


@dataclass(frozen=True, slots=True)
class WordSpan:
    """One word: ``text[start:end] == word`` in the original text."""

    start: int
    end: int
    word: str


def split_words(text: str) -> list[WordSpan]:
    """The words of ``text`` in order, each with its offsets into ``text`` (module docstring).

    A repeated word comes out once per occurrence, each with its own offsets.
    """
    # Compiled per call (re caches compiled patterns): no module-level state to build at import.
    return [WordSpan(m.start(), m.end(), m.group()) for m in re.finditer(_PATTERN, text)]


def mask_words(text: str, spans: Iterable[WordSpan]) -> str:
    """``text`` with the characters of every span removed, everything else kept in place."""
    pieces = []
    position = 0
    for span in sorted(spans, key=lambda s: s.start):
        if span.start < position:
            raise ValueError(f"span {span.start}:{span.end} overlaps the previous one; pass spans from split_words")
        pieces.append(text[position : span.start])
        position = span.end
    pieces.append(text[position:])
    return "".join(pieces)
