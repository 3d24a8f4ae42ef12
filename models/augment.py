"""Noise augmentation: training texts in the forms real chat takes, benign and toxic alike.

Why: a guard fine-tuned only on clean, well-formed sentences learns that *form* is
evidence. Shouting, typos, ``soooo``, ``RT @user:``, links, hashtags, emoji and letter
games (``S St Sta Stay``) are rare in its data, so it scores them as toxic. Giving the
same forms to toxic and benign texts with the labels unchanged makes the form carry no
information, and the model has to read the words.

What a noisy variant can get (1-3 of these per text, chosen by ``rng``):

- casing: ALL CAPS or all lower;
- typos: swap two neighbouring letters, drop or double a letter, in some words (never all);
- elongation: a vowel or a final letter stretched (``sooo``), or ``!!!!``;
- letter games: one word spelled out progressively (``S St Sta Stay``), backwards
  (``Stay Sta St S``) or letter by letter (``s t a y``);
- missing punctuation (``youre``, no full stop);
- HTML entities as scraped tweets carry them (``&amp;``, ``&quot;``, ``&#39;``, ``&lt;3``,
  double-escaped ``&amp;amp;``);
- social-media wrappers: ``RT @handle:``, leading @mentions, a trailing link, neutral
  hashtags (``#tbt``, ``#StayHome``) and common, neutral emoji.

Wrappers use only neutral material: random handles, hashtags and emoji that carry no
sentiment aimed at anyone (no middle finger, knife or pistol), because they are added to
benign texts too and must not change what a text means.

The build normalises after adding noise (``normalization.apply(add_noise(...))``), so
part of the noise (links, mentions, entities, long runs) is mapped away again: that is
exactly the text serving will see. Everything is drawn from the ``rng`` passed in, so a
seed gives the same variants.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["add_noise", "noisy_variant"]

_HASHTAGS = (
    "tbt", "StayHome", "MondayMotivation", "NowPlaying", "GameDay", "nofilter", "FollowFriday",
    "TBT", "weekend", "news", "ThrowbackThursday", "music", "photo", "Friday", "WorldCup2018",
)
_EMOJI = ("😂", "😭", "🙏", "❤️", "🔥", "👍", "😍", "💯", "🙄", "😩", "👀", "✨", "🤣", "😊", "🎉", "🤔", "😅")
_LINK_HOSTS = ("https://t.co/", "http://bit.ly/", "https://www.youtube.com/watch?v=", "http://instagram.com/p/")
_PUNCTUATION = frozenset(".,!?;:'\"")
_VOWELS = frozenset("aeiouyAEIOUY")


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _token(rng: np.random.Generator, length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_pick(rng, alphabet) for _ in range(length))


def _handle(rng: np.random.Generator) -> str:
    """A random handle shaped like real ones (``@M_A_Larson``, ``@kate93``): no real word."""
    shape = int(rng.integers(3))
    if shape == 0:
        return "@" + _token(rng, int(rng.integers(4, 12)), string.ascii_lowercase) + str(int(rng.integers(100)))
    if shape == 1:
        return "@" + "_".join(_token(rng, int(rng.integers(1, 6)), string.ascii_letters) for _ in range(3))
    return "@" + _token(rng, int(rng.integers(5, 14)), string.ascii_letters + "_")


def _words(text: str) -> list[str]:
    return text.split(" ")


def _letter_words(words: list[str], min_len: int) -> list[int]:
    return [i for i, w in enumerate(words) if len(w) >= min_len and w.isalpha()]


def _casing(text: str, rng: np.random.Generator) -> str:
    return text.upper() if rng.random() < 0.5 else text.lower()


def _typo_in(word: str, rng: np.random.Generator) -> str:
    i = int(rng.integers(1, len(word) - 1))  # never the first letter: it still reads as the word
    kind = int(rng.integers(3))
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]  # swap with the next letter
    if kind == 1:
        return word[:i] + word[i + 1 :]  # drop
    return word[:i] + word[i] + word[i:]  # double


def _typos(text: str, rng: np.random.Generator) -> str:
    words = _words(text)
    candidates = _letter_words(words, 4)
    if not candidates:
        return text
    count = max(1, round(len(candidates) * 0.2))  # about one word in five: never all of several
    for i in rng.choice(candidates, size=count, replace=False):
        words[int(i)] = _typo_in(words[int(i)], rng)
    return " ".join(words)


def _elongate(text: str, rng: np.random.Generator) -> str:
    stretch = int(rng.integers(3, 7))
    if rng.random() < 0.3 and text and text[-1] in "!?.":
        return text + text[-1] * stretch
    words = _words(text)
    candidates = _letter_words(words, 2)
    if not candidates:
        return text + "!" * stretch
    i = int(_pick_index(rng, candidates))
    word = words[i]
    vowels = [j for j, c in enumerate(word) if c in _VOWELS]
    j = vowels[-1] if vowels else len(word) - 1
    words[i] = word[: j + 1] + word[j] * stretch + word[j + 1 :]
    return " ".join(words)


def _pick_index(rng: np.random.Generator, indices: Sequence[int]) -> int:
    return indices[int(rng.integers(len(indices)))]


def _letter_game(text: str, rng: np.random.Generator) -> str:
    words = _words(text)
    candidates = _letter_words(words, 3)
    if not candidates:
        return text
    i = _pick_index(rng, candidates)
    word = words[i]
    kind = int(rng.integers(3))
    if kind == 0:
        words[i] = " ".join(word[:k] for k in range(1, len(word) + 1))  # S St Sta Stay
    elif kind == 1:
        words[i] = " ".join(word[:k] for k in range(len(word), 0, -1))  # Stay Sta St S
    else:
        words[i] = " ".join(word)  # S t a y
    return " ".join(words)


def _no_punctuation(text: str, rng: np.random.Generator) -> str:
    del rng
    stripped = "".join(c for c in text if c not in _PUNCTUATION)
    return stripped if stripped.strip() else text


def _entities(text: str, rng: np.random.Generator) -> str:
    amp = "&amp;amp;" if rng.random() < 0.2 else "&amp;"
    if "&" in text:
        return text.replace("&", amp)
    if " and " in text and rng.random() < 0.7:
        return text.replace(" and ", f" {amp} ", 1)
    if '"' in text:
        return text.replace('"', "&quot;")
    if "'" in text:
        return text.replace("'", "&#39;")
    return f"{text} &lt;3"


def _mentions(text: str, rng: np.random.Generator) -> str:
    handles = " ".join(_handle(rng) for _ in range(int(rng.integers(1, 4))))
    return f"{handles} {text}"


def _retweet(text: str, rng: np.random.Generator) -> str:
    return f"RT {_handle(rng)}: {text}"


def _link(text: str, rng: np.random.Generator) -> str:
    return f"{text} {_pick(rng, _LINK_HOSTS)}{_token(rng, int(rng.integers(6, 12)))}"


def _hashtags(text: str, rng: np.random.Generator) -> str:
    tags = " ".join("#" + _pick(rng, _HASHTAGS) for _ in range(int(rng.integers(1, 3))))
    return f"{text} {tags}"


def _emoji(text: str, rng: np.random.Generator) -> str:
    run = _pick(rng, _EMOJI) * int(rng.integers(1, 4))
    if rng.random() < 0.7:
        return f"{text} {run}" if rng.random() < 0.5 else f"{text}{run}"
    words = _words(text)
    at = int(rng.integers(len(words) + 1))
    return " ".join([*words[:at], run, *words[at:]])


_Noise = Callable[[str, np.random.Generator], str]
# In the order they apply: changes inside the text first, wrappers around it last (so a
# typo never lands in a link, and a retweet marker comes before the mentions it quotes).
_NOISES: tuple[_Noise, ...] = (
    _typos,
    _letter_game,
    _elongate,
    _no_punctuation,
    _casing,
    _entities,
    _emoji,
    _hashtags,
    _link,
    _mentions,
    _retweet,
)
_HOW_MANY = (1, 2, 3)
_HOW_MANY_P = (0.5, 0.35, 0.15)


def noisy_variant(text: str, rng: np.random.Generator) -> str:
    """``text`` with 1-3 kinds of social-media noise, chosen and shaped by ``rng``.

    A non-empty text always comes back changed and non-empty; an empty or blank one comes
    back as it is (there is nothing to make noisy, and a blank training row means nothing).
    """
    if not text.strip():
        return text
    count = int(rng.choice(_HOW_MANY, p=_HOW_MANY_P))
    chosen = sorted(int(i) for i in rng.choice(len(_NOISES), size=count, replace=False))
    out = text
    for index in chosen:
        out = _NOISES[index](out, rng)
    if out == text:  # lowercasing a lower-case text, typos in a text of short words ...
        out = _emoji(out, rng)
    return out


def add_noise(texts: Sequence[str], *, rng: np.random.Generator, fraction: float) -> list[str]:
    """The texts, a ``fraction`` of them (drawn by ``rng``) replaced by a noisy variant.

    Same length and order as ``texts``, so the labels of row ``i`` still belong to row
    ``i``: noise never touches a label. Apply the model's normalisation afterwards, as
    serving will.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction!r} must be between 0 and 1 (the share of texts made noisy)")
    chosen = rng.random(len(texts)) < fraction
    return [noisy_variant(text, rng) if pick else text for text, pick in zip(texts, chosen, strict=True)]
