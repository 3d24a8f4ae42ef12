"""Noise augmentation: realistic social-media forms, deterministic per seed, labels untouched."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fairgate.guardrails.normalize import TextNormalization
from fairgate.models.augment import add_noise, noisy_variant

TEXTS = [
    "You are an idiot and everyone knows it.",
    "I love this blender, it works great!",
    "Stay home tonight",
    "My neighbour is a Muslim woman and she is lovely.",
    "ok",
    "what a terrible, stupid idea",
] * 20


def test_same_seed_gives_the_same_variants_and_another_seed_others() -> None:
    first = add_noise(TEXTS, rng=np.random.default_rng(7), fraction=0.5)
    again = add_noise(TEXTS, rng=np.random.default_rng(7), fraction=0.5)
    other = add_noise(TEXTS, rng=np.random.default_rng(8), fraction=0.5)
    assert first == again
    assert first != other


def test_a_useful_fraction_changes_and_the_rest_is_untouched() -> None:
    noisy = add_noise(TEXTS, rng=np.random.default_rng(0), fraction=0.4)
    changed = [a != b for a, b in zip(TEXTS, noisy, strict=True)]
    assert 0.25 <= np.mean(changed) <= 0.55
    assert len(noisy) == len(TEXTS), "row i keeps its labels: same length, same order"
    assert all(b == a for a, b, c in zip(TEXTS, noisy, changed, strict=True) if not c)


def test_fraction_zero_and_one() -> None:
    rng = np.random.default_rng(1)
    assert add_noise(TEXTS, rng=rng, fraction=0.0) == TEXTS
    assert all(a != b for a, b in zip(TEXTS, add_noise(TEXTS, rng=rng, fraction=1.0), strict=True))


def test_fraction_outside_zero_one_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"fraction=1.5 must be between 0 and 1"):
        add_noise(TEXTS, rng=np.random.default_rng(0), fraction=1.5)


def test_every_variant_is_changed_and_non_empty() -> None:
    rng = np.random.default_rng(3)
    for text in [*TEXTS, "a", "!!!", "12 34"]:
        variant = noisy_variant(text, rng)
        assert variant.strip() and variant != text, (text, variant)
    assert noisy_variant("   ", rng) == "   "


def _one_edit(word: str, original: str) -> bool:
    """A swap of two neighbouring letters, or one letter dropped or doubled."""
    if word == original:
        return False
    if len(word) == len(original):
        diff = [i for i, (a, b) in enumerate(zip(word, original, strict=True)) if a != b]
        return len(diff) == 2 and diff[1] == diff[0] + 1 and word[diff[0]] == original[diff[1]]
    longer, shorter = (word, original) if len(word) > len(original) else (original, word)
    return len(longer) == len(shorter) + 1 and any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


def _has_typo(text: str, variant: str) -> bool:
    originals = set(re.findall(r"[A-Za-z]{4,}", text))
    return any(
        any(_one_edit(word, original) for original in originals)
        for word in re.findall(r"[A-Za-z]{3,}", variant)
        if word not in originals
    )


def test_variants_show_each_kind_of_noise() -> None:
    rng = np.random.default_rng(11)
    sources = TEXTS * 5
    variants = [noisy_variant(text, rng) for text in sources]
    kinds = {
        "caps": any(v.isupper() for v in variants),
        "retweet": any(v.startswith("RT @") for v in variants),
        "mention": any(re.match(r"@\w+ ", v) for v in variants),
        "link": any("http" in v for v in variants),
        "hashtag": any(re.search(r" #\w+", v) for v in variants),
        "entity": any("&amp;" in v or "&lt;3" in v or "&#39;" in v for v in variants),
        "elongation": any(re.search(r"(\w)\1{3,}", v) for v in variants),
        "letter game": any(re.search(r"\b(\w) \1\w \1\w\w\b", v) for v in variants),
        "emoji": any(not v.isascii() for v in variants),
        "typo": any(_has_typo(t, v) for t, v in zip(sources, variants, strict=True)),
    }
    assert all(kinds.values()), [k for k, seen in kinds.items() if not seen]


def test_normalising_noise_keeps_words_a_model_can_read() -> None:
    """What the build trains on: normalisation maps the wrappers away, the words stay."""
    social = TextNormalization.social()
    rng = np.random.default_rng(5)
    for text in TEXTS[:6]:
        normalised = social.apply_one(noisy_variant(text, rng))
        assert "&amp;" not in normalised and "https://" not in normalised
        assert not re.search(r"@(?!user\b)\w", normalised), normalised
