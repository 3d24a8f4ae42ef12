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
3. **Noise augmentation** (:func:`fairgate.models.augment.noisy_variant`): a share of the
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
) -> AugmentedData:
    """Counterfactual and noisy copies of ``data`` (already normalised), as families.

    ``variants_per_text`` swapped copies (drawn without replacement from all the text's
    variants) per identity-bearing text; a noisy copy for a ``noise_fraction`` share of all
    original texts. Copies inherit their original's labels and mask.
    """
    from fairgate.models.augment import noisy_variant

    rng = np.random.default_rng(seed)
    texts: list[str] = []
    sources: list[int] = []
    families = np.full(len(data), -1, dtype=np.int64)
    with_identity = swapped = noisy = 0
    seen = set(data.texts)
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
    if noise_fraction > 0:
        chosen = np.flatnonzero(rng.random(len(data)) < noise_fraction)
        raw = [noisy_variant(data.texts[i], rng) for i in chosen]
        for index, text in zip(chosen.tolist(), normalizer.apply(raw), strict=True):
            if text == data.texts[index] or text in seen:
                continue
            texts.append(text)
            sources.append(index)
            seen.add(text)
            families[index] = index
            noisy += 1
    added = data.subset(sources) if sources else None
    if added is None:
        return AugmentedData(
            data=data, families=families, summary=_summary(len(data), with_identity, 0, 0)
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
        summary=_summary(len(data), with_identity, swapped, noisy),
    )


def _summary(original: int, with_identity: int, swapped: int, noisy: int) -> dict[str, Any]:
    return {
        "original_rows": original,
        "rows_naming_a_group": with_identity,
        "counterfactual_copies": swapped,
        "noisy_copies": noisy,
        "training_rows": original + swapped + noisy,
    }
