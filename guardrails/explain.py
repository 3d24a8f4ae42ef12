"""Occlusion explanations: which words moved a model's score, from ONNX batches alone.

A moderator asks *which words made the guard act?* The answer here is occlusion: score the
text, score it again with one word masked, once per word, and call the drop the word's
*contribution* (``score(original) - score(masked)``, in probability). It needs nothing but
the model's forward pass, so it runs on the same ONNX model as serving (never torch, no
gradients), and it is exact for what it claims: what this model says without that word.

**Masking removes the word** (:func:`~fairgate.guardrails.word_spans.mask_words`), rather
than putting ``[MASK]``, ``[UNK]`` or a neutral word in its place, because the text without
the word is text the model was fine-tuned on (natural sentences, normalised), while
``[MASK]`` never occurs in fine-tuning data (it is MLM pre-training's token, and its
embedding carries whatever the pre-training left in it), ``[UNK]`` is rare and marks odd
input, and a "neutral" word is a choice that itself moves the score. Removal also works
for any tokenizer (the tiny test tokenizers have no ``[MASK]``). Its known cost: removing
a word shifts the positions of those after it, which MiniLM reads too; for a classifier of
short texts that is small next to the word's own effect. Measured on two bundled guards
(docs/guardrails.md, "Explanations"): removal and ``[UNK]`` put the word a moderator
would name first about equally often, removal moved function words' scores least, and
``[MASK]`` moved them 1.2-3.6 times more.

**Offsets are into the text the user sent.** Words are split in the original text
(:func:`~fairgate.guardrails.word_spans.split_words`), masked there, and the masked texts
are scored as any text: the model applies its own input normalisation
(``OnnxTextModel.encode``), so no offset ever refers to the normalised text. Offsets
count code points (Python ``str`` indices), not UTF-16 units or bytes.

**Cost, bounded.** For the texts of one call: one model call scores, together, each text
that has something to explain plus one row per word with that word removed (at most
``max_words`` words per text: the *first* ones, because the model keeps the first
``max_length`` tokens and drops the rest, so the first words are those it surely reads;
the result says how many were left out). A second, smaller call scores, per explained
label, the text with its top words removed together (deduplicated; skipped where the top
set is one word, whose row the first call already has). The second call cannot join the first: which words
are the top ones is only known from the first call's scores. Texts with nothing to
explain add no rows, and a call with nothing to explain makes no model call at all.

Contributions are in probability: where two words each suffice (two insults), removing
either barely moves a saturated score. ``masked_score``, the score with the top words
removed *together*, shows that case: it falls when each single contribution does not.

**Explain with fp32 where it matters.** An int8 model quantises activations dynamically,
per batch, so a row's score moves a little with the rows batched beside it (up to 0.03-0.09
on the bundled guards, mean 0.002-0.006), and a contribution is a difference between rows
of one batch. fp32 scores do not depend on the batch, so its contributions are exact
(docs/guardrails.md, "Explanations", has the measurement). The functions here run the
model they are given; ``Guard.explain(scorer=...)`` takes an fp32 scorer of the same guard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from fairgate.guardrails.contracts import SINGLE_LABEL_TASK, Action
from fairgate.guardrails.word_spans import WordSpan, mask_words, split_words

__all__ = [
    "DEFAULT_MAX_WORDS",
    "DEFAULT_TOP_K",
    "Explanation",
    "ExplanationError",
    "LabelExplanation",
    "ProbabilityModel",
    "ScoreBatch",
    "WordContribution",
    "explain_labels",
    "explain_prediction",
    "occlude",
    "unexplained",
]

DEFAULT_TOP_K = 3
# Words occluded per text: all of every text in the bundled toxicity set and in Davidson's
# tweets (p90 14 and 25 words), 96% of SST-2 dev (p90 29). Each word is one more row of the
# text's length, so the cost grows with length x words.
DEFAULT_MAX_WORDS = 32

ScoreBatch = Callable[[Sequence[str]], np.ndarray]
"""A batch of texts -> probabilities ``[n, n_labels]`` in 0..1 (one model call)."""


class ExplanationError(ValueError):
    """An explanation was asked for with an argument it cannot honour (the message names the fix)."""


class ProbabilityModel(Protocol):
    """What an explanation needs of a model: its labels, its task, and probabilities for a batch.

    :class:`~fairgate.guardrails.onnx_model.OnnxTextModel` is one.
    """

    @property
    def labels(self) -> Sequence[str]: ...

    @property
    def task(self) -> str: ...

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


class WordContribution(BaseModel):
    """One word of the original text and how much removing it lowers the label's score.

    ``text[start:end] == word``, with ``text`` the text as sent (code point offsets).
    ``word`` is a piece of the user's text: records that must not keep raw text (the
    audit) keep ``start``, ``end`` and ``contribution`` only.
    """

    model_config = ConfigDict(frozen=True)

    start: int
    end: int
    word: str
    contribution: float


class LabelExplanation(BaseModel):
    """The top words for one label (a toxicity category, or the classifier's predicted label).

    ``score`` is the label's probability for the original text; ``words`` the top words by
    contribution, largest first, only those whose removal lowers the score (fewer than
    ``top_k`` when fewer do); ``masked_score`` the score with all of ``words`` removed
    together (``score`` itself when ``words`` is empty). ``action`` is what the guard's
    policy does at ``score`` for this category (``Guard.explain``); None for a classifier.
    """

    model_config = ConfigDict(frozen=True)

    label: str
    score: float
    masked_score: float
    action: Action | None = None
    words: tuple[WordContribution, ...] = ()


class Explanation(BaseModel):
    """The explanation of one text: per explained label, its top words.

    ``words_total`` counts the words of the text; ``words_occluded`` those that were masked
    one by one (the first ``max_words``; 0 when the text had no label to explain).
    """

    model_config = ConfigDict(frozen=True)

    words_total: int
    words_occluded: int
    labels: tuple[LabelExplanation, ...] = ()

    @property
    def truncated(self) -> bool:
        """True when the text was explained but some of its words were not occluded (``max_words``)."""
        return bool(self.labels) and self.words_occluded < self.words_total

    def label(self, name: str) -> LabelExplanation:
        """The explanation of label ``name``; :class:`KeyError` naming the explained ones if absent."""
        for item in self.labels:
            if item.label == name:
                return item
        raise KeyError(f"{name!r} was not explained; explained: {', '.join(i.label for i in self.labels) or 'none'}")


def unexplained(texts: Sequence[str]) -> list[Explanation]:
    """An empty explanation per text (nothing asked, nothing flagged): no model call."""
    return [Explanation(words_total=len(split_words(text)), words_occluded=0) for text in texts]


def explain_labels(
    model: ProbabilityModel,
    texts: Sequence[str],
    labels: Sequence[str] | None = None,
    *,
    top_k: int = DEFAULT_TOP_K,
    max_words: int = DEFAULT_MAX_WORDS,
) -> list[Explanation]:
    """Explain ``labels`` (default: every label of the model) for every text.

    For a multi-label model (the guard) each label is its own sigmoid; for a single-label
    one the label's softmax probability. ``labels=[]`` explains nothing and calls nothing.
    """
    wanted = list(model.labels) if labels is None else list(labels)
    return occlude(model.predict_proba, model.labels, texts, [wanted] * len(texts), top_k=top_k, max_words=max_words)


def explain_prediction(
    model: ProbabilityModel,
    texts: Sequence[str],
    *,
    top_k: int = DEFAULT_TOP_K,
    max_words: int = DEFAULT_MAX_WORDS,
) -> list[Explanation]:
    """Explain a single-label classifier's predicted label (its highest probability) per text.

    The prediction is read from the original text's row of the occlusion batch itself, so
    it costs no extra model call.
    """
    if model.task != SINGLE_LABEL_TASK:
        raise ExplanationError(
            f"explain_prediction needs a {SINGLE_LABEL_TASK} model, got {model.task!r}; "
            "for the guard use Guard.explain, or explain_labels(model, texts, labels=[...])"
        )
    return occlude(model.predict_proba, model.labels, texts, "predicted", top_k=top_k, max_words=max_words)


def _check_limits(top_k: int, max_words: int) -> None:
    for name, value in (("top_k", top_k), ("max_words", max_words)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ExplanationError(f"{name}={value!r}; pass a whole number of words, at least 1")


def _target_indices(labels: Sequence[str], wanted: Sequence[str]) -> list[int]:
    index = {label: i for i, label in enumerate(labels)}
    unknown = [label for label in wanted if label not in index]
    if unknown:
        raise ExplanationError(
            f"the model has no label {', '.join(map(repr, unknown))}; it scores {', '.join(labels)}"
        )
    return [index[label] for label in dict.fromkeys(wanted)]


class _Plan:
    """One text's part of the batch: its words, the labels to explain, its first row."""

    __slots__ = ("first_row", "spans", "targets", "words_total")

    def __init__(self, *, spans: list[WordSpan], words_total: int, targets: list[int] | None) -> None:
        self.spans = spans
        self.words_total = words_total
        self.targets = targets  # None: the predicted label, read from the batch
        self.first_row = -1


def _scored(score: ScoreBatch, rows: Sequence[str], n_labels: int) -> np.ndarray:
    """One model call, checked: ``[len(rows), n_labels]`` finite probabilities as float64."""
    array = np.asarray(score(rows), dtype=np.float64)
    if array.shape != (len(rows), n_labels):
        raise ValueError(
            f"the model returned shape {array.shape} for {len(rows)} texts, expected {(len(rows), n_labels)}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("the model returned non-finite scores")
    return array


def occlude(
    score: ScoreBatch,
    labels: Sequence[str],
    texts: Sequence[str],
    targets: Sequence[Sequence[str]] | Literal["predicted"],
    *,
    top_k: int = DEFAULT_TOP_K,
    max_words: int = DEFAULT_MAX_WORDS,
) -> list[Explanation]:
    """The occlusion explanations of ``texts`` (module docstring), with at most two calls of ``score``.

    ``score`` maps a batch to probabilities over ``labels``. ``targets`` holds, per text,
    the labels to explain (an empty list: none, and no rows for that text), or
    ``"predicted"``: each text's highest-scoring label, read from its own row of the batch.
    """
    _check_limits(top_k, max_words)
    labels = list(labels)
    if targets != "predicted" and len(targets) != len(texts):
        raise ExplanationError(f"got {len(texts)} texts but {len(targets)} target lists; pass one list per text")
    plans: list[_Plan] = []
    rows: list[str] = []
    for i, text in enumerate(texts):
        spans = split_words(text)
        wanted = None if targets == "predicted" else _target_indices(labels, targets[i])
        plan = _Plan(spans=spans[:max_words], words_total=len(spans), targets=wanted)
        if wanted is None or wanted:
            plan.first_row = len(rows)
            rows.append(text)
            rows.extend(mask_words(text, (span,)) for span in plan.spans)
        plans.append(plan)
    if not rows:
        return [Explanation(words_total=plan.words_total, words_occluded=0) for plan in plans]
    first = _scored(score, rows, len(labels))

    # Per text and label: the original score, each word's contribution, the top words.
    ranked: list[list[tuple[int, float, list[tuple[int, float]]]]] = []
    joint_rows: dict[tuple[int, tuple[int, ...]], int] = {}
    joint_texts: list[str] = []
    for i, plan in enumerate(plans):
        found: list[tuple[int, float, list[tuple[int, float]]]] = []
        if plan.first_row >= 0:
            original = first[plan.first_row]
            masked = first[plan.first_row + 1 : plan.first_row + 1 + len(plan.spans)]
            wanted = plan.targets if plan.targets is not None else [int(np.argmax(original))]
            for j in wanted:
                drops = original[j] - masked[:, j]
                # Largest drop first; among equal drops the earlier word (a stable sort on -drop).
                order = np.argsort(-drops, kind="stable")
                top = [(int(w), float(drops[w])) for w in order[:top_k] if drops[w] > 0]
                found.append((j, float(original[j]), top))
                if len(top) > 1:
                    key = (i, tuple(sorted(w for w, _ in top)))
                    if key not in joint_rows:
                        joint_rows[key] = len(joint_texts)
                        joint_texts.append(mask_words(texts[i], (plan.spans[w] for w in key[1])))
        ranked.append(found)
    joint = _scored(score, joint_texts, len(labels)) if joint_texts else np.zeros((0, len(labels)))

    results = []
    for i, (plan, found) in enumerate(zip(plans, ranked, strict=True)):
        explained = []
        for j, original_score, top in found:
            if not top:
                masked_score = original_score
            elif len(top) == 1:
                masked_score = float(first[plan.first_row + 1 + top[0][0], j])
            else:
                masked_score = float(joint[joint_rows[(i, tuple(sorted(w for w, _ in top)))], j])
            words = tuple(
                WordContribution(
                    start=plan.spans[w].start, end=plan.spans[w].end, word=plan.spans[w].word, contribution=drop
                )
                for w, drop in top
            )
            explained.append(
                LabelExplanation(label=labels[j], score=original_score, masked_score=masked_score, words=words)
            )
        results.append(
            Explanation(
                words_total=plan.words_total,
                words_occluded=len(plan.spans) if found else 0,
                labels=tuple(explained),
            )
        )
    return results
