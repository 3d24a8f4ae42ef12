"""The guard's training set, made fair and robust before fine-tuning.

Three steps, each recorded in the build metadata:

1. **Normalisation** (:class:`fairgate.guardrails.normalize.TextNormalization`): every text of
   every split is mapped exactly as serving will map it (the spec goes into the model's
   manifest), so the model never learns from a form it will not see.
2. **Counterfactual data augmentation**: a training text that names an identity group (the
   lexicon of :mod:`fairgate.guardrails.identity`) gains copies with the group swapped for
   others of the same kind (religion for religion, ...), with the *same labels*: a hostile
   generalisation stays an attack whoever it targets, and a benign one stays benign. The
   model can then no longer use the group word as evidence.
3. **Cross-group copies of attacks**: a *toxic* text that names one group only in the plural
   ("Muslims are ...") also gains copies about groups of *other* axes, in their varied words
   ("wheelchair users", "pensioners"), with the same labels. Same-axis swaps cannot protect a
   group that is alone on its axis (disability) or whose hostile rows are rare (age): the
   first guards scored "<group> are less than human" 0.95 for most groups and 0.02 for
   wheelchair users. Benign texts are not copied across axes ("Deaf people pray at the
   mosque" is not a sentence the data should teach).
4. **Noise augmentation** (:func:`fairgate.models.augment.noisy_variant`): a share of the
   texts, toxic and benign alike, gains a copy in the forms of real chat (casing, typos,
   elongation, letter games, @mentions, links), normalised like everything else.

A text and its copies form one *family* (an id per row, -1 for none): fine-tuning keeps a
family in one batch and penalises the spread of its logits (counterfactual logit pairing,
``FinetuneConfig.counterfactual_weight``), for identity swaps and noise alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fairgate.models.guard._csv import GuardDataset


class Swapper(Protocol):
    """What augmentation needs of the identity module: the swapped variants of one text."""

    def counterfactuals(self, text: str) -> Sequence[Any]: ...


class CrossGroupSwapper(Protocol):
    """What cross-group copies need: mentions, every group and its plural phrases."""

    @property
    def groups(self) -> tuple[str, ...]: ...

    def find_mentions(self, text: str) -> Sequence[Any]: ...

    def plural_phrases(self, group: str) -> tuple[str, ...]: ...


class Normalizer(Protocol):
    def apply(self, texts: Sequence[str]) -> list[str]: ...


@dataclass(frozen=True, kw_only=True)
class AugmentedData:
    """Training rows after augmentation, their family ids and what was added."""

    data: GuardDataset
    families: np.ndarray
    summary: dict[str, Any]


def normalise_dataset(data: GuardDataset, normalizer: Normalizer) -> GuardDataset:
    """The same rows with their texts normalised."""
    return GuardDataset(
        texts=normalizer.apply(data.texts),
        targets=data.targets,
        mask=data.mask,
        layout=data.layout,
        columns=dict(data.columns),
    )


def augment_training_data(
    data: GuardDataset,
    *,
    swapper: Swapper | None,
    variants_per_text: int,
    noise_fraction: float,
    normalizer: Normalizer,
    seed: int,
    cross_group: CrossGroupSwapper | None = None,
    cross_group_variants: int = 0,
) -> AugmentedData:
    """Counterfactual and noisy copies of ``data`` (already normalised), as families.

    ``variants_per_text`` swapped copies (drawn without replacement from all the text's
    variants) per identity-bearing text; a noisy copy for a ``noise_fraction`` share of all
    original texts; ``cross_group_variants`` copies about groups of any axis per toxic text
    that names one group in the plural. Copies inherit their original's labels and mask.
    """
    from fairgate.models.augment import noisy_variant

    rng = np.random.default_rng(seed)
    texts: list[str] = []
    sources: list[int] = []
    families = np.full(len(data), -1, dtype=np.int64)
    with_identity = swapped = crossed = noisy = 0
    seen = set(data.texts)

    def _add(text: str, index: int) -> bool:
        """Append ``text`` as a copy of row ``index`` (joining its family), unless already present."""
        if text in seen:
            return False
        texts.append(text)
        sources.append(index)
        seen.add(text)
        families[index] = index
        return True

    for index, text in enumerate(data.texts):
        if swapper is None or variants_per_text == 0:
            break
        variants = [v.text for v in swapper.counterfactuals(text) if v.text not in seen]
        if not variants:
            continue
        with_identity += 1
        take = min(variants_per_text, len(variants))
        for choice in rng.choice(len(variants), size=take, replace=False):
            texts.append(variants[int(choice)])
            sources.append(index)
            seen.add(variants[int(choice)])
            swapped += 1
        families[index] = index
    if cross_group is not None and cross_group_variants > 0:
        toxic = (data.targets[:, 0] >= 0.5) & data.mask[:, 0].astype(bool)
        for index in np.flatnonzero(toxic).tolist():
            copies = cross_group_copies(data.texts[index], cross_group, rng=rng, count=cross_group_variants)
            crossed += sum(_add(text, index) for text in copies)
    if noise_fraction > 0:
        chosen = np.flatnonzero(rng.random(len(data)) < noise_fraction)
        raw = [noisy_variant(data.texts[i], rng) for i in chosen]
        for index, text in zip(chosen.tolist(), normalizer.apply(raw), strict=True):
            if text != data.texts[index]:
                noisy += _add(text, index)
    added = data.subset(sources) if sources else None
    if added is None:
        return AugmentedData(
            data=data, families=families, summary=_summary(len(data), with_identity, 0, 0, 0)
        )
    combined = GuardDataset(
        texts=list(data.texts) + texts,
        targets=np.concatenate([data.targets, added.targets]),
        mask=np.concatenate([data.mask, added.mask]),
        layout=data.layout,
        columns=dict(data.columns),
    )
    all_families = np.concatenate([families, np.asarray(sources, dtype=np.int64)])
    return AugmentedData(
        data=combined,
        families=all_families,
        summary=_summary(len(data), with_identity, swapped, crossed, noisy),
    )


def cross_group_copies(
    text: str, swapper: CrossGroupSwapper, *, rng: np.random.Generator, count: int
) -> list[str]:
    """Up to ``count`` copies of ``text`` about other groups (any axis), or none.

    Only a text whose mentions all name one group in the plural, do not overlap and are not
    possessives ("Muslims' ...") is copied: there a plural phrase of any group fits in the
    mention's place, so the copy is well formed. Targets are drawn without replacement from
    every other group, each written with one of its plural phrases at random.
    """
    mentions = sorted(swapper.find_mentions(text), key=lambda m: m.start)
    if not mentions or {m.group for m in mentions} != {mentions[0].group}:
        return []
    end = -1
    for mention in mentions:
        after = text[mention.end : mention.end + 1]
        if mention.form != "plural" or mention.start < end or after in {"'", "\u2019"}:
            return []
        end = mention.end
    source = mentions[0].group
    targets = [group for group in swapper.groups if group != source]
    copies: list[str] = []
    for pick in rng.choice(len(targets), size=min(count, len(targets)), replace=False).tolist():
        phrases = swapper.plural_phrases(targets[pick])
        if not phrases:
            continue
        phrase = phrases[int(rng.integers(len(phrases)))]
        pieces: list[str] = []
        pos = 0
        for mention in mentions:
            pieces.append(text[pos : mention.start])
            pieces.append(_recase(phrase, mention.surface, sentence_start=_starts_sentence(text, mention.start)))
            pos = mention.end
        pieces.append(text[pos:])
        copies.append("".join(pieces))
    return copies


def _recase(phrase: str, surface: str, *, sentence_start: bool) -> str:
    """``phrase`` in the case of the words it replaces: ALL CAPS, capitalised where a sentence
    starts, else as the lexicon writes it ("Muslims", "deaf people")."""
    if len(surface) > 1 and surface.isupper():
        return phrase.upper()
    if sentence_start and surface[:1].isupper():
        return phrase[:1].upper() + phrase[1:]
    return phrase


def _starts_sentence(text: str, start: int) -> bool:
    before = text[:start].rstrip(" \"'(\u201c")
    return not before or before[-1] in ".!?:\n"


def _summary(original: int, with_identity: int, swapped: int, crossed: int, noisy: int) -> dict[str, Any]:
    return {
        "original_rows": original,
        "rows_naming_a_group": with_identity,
        "counterfactual_copies": swapped,
        "cross_group_copies": crossed,
        "noisy_copies": noisy,
        "training_rows": original + swapped + crossed + noisy,
    }
