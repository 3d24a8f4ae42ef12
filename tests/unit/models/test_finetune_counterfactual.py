"""Counterfactual logit pairing: families share a batch, the penalty is what it says, and
training with it pulls the logits of identity-swapped texts together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fairgate.models.datasets import LabelledData
from fairgate.models.encoder import load_sequence_classifier, load_tokenizer, resolve_encoder
from fairgate.models.finetune import (
    FinetuneConfig,
    _epoch_batches,
    counterfactual_penalty,
    counterfactual_units,
    finetune,
    pairing_outputs,
    predict_logits,
    seed_everything,
)


def test_units_keep_each_family_whole_and_every_row_once() -> None:
    groups = np.array([-1, 0, 0, 1, -1, 1, 1, 2])
    units = counterfactual_units(groups, len(groups))
    flat = sorted(int(i) for unit in units for i in unit)
    assert flat == list(range(len(groups)))
    families = {tuple(sorted(unit.tolist())) for unit in units if len(unit) > 1}
    assert families == {(1, 2), (3, 5, 6)}


def test_units_reject_misaligned_groups() -> None:
    with pytest.raises(ValueError, match="3 entries for 4 training rows"):
        counterfactual_units(np.array([0, 0, -1]), 4)


def test_epoch_batches_never_split_a_family() -> None:
    rng = np.random.default_rng(0)
    n = 200
    groups = np.full(n, -1)
    for family, start in enumerate(range(0, 120, 3)):
        groups[start : start + 3] = family
    lengths = rng.integers(3, 40, size=n)
    units = counterfactual_units(groups, n)
    batches = _epoch_batches(lengths, 16, np.random.default_rng(1), True, units)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(n))
    where = {int(i): b for b, batch in enumerate(batches) for i in batch}
    for family in range(40):
        members = np.flatnonzero(groups == family)
        assert len({where[int(i)] for i in members}) == 1, f"family {family} split across batches"


def test_penalty_is_half_the_absolute_gap_for_a_pair_and_none_without_families() -> None:
    torch = pytest.importorskip("torch")
    logits = torch.tensor([[1.0, 2.0], [3.0, -2.0], [5.0, 5.0]])
    penalty = counterfactual_penalty(logits, np.array([0, 0, -1]))
    assert penalty is not None
    # |1-3|/2 and |2-(-2)|/2 averaged over the two logits: (1 + 2) / 2
    assert float(penalty) == pytest.approx(1.5)
    assert counterfactual_penalty(logits, np.array([-1, -1, 0])) is None


def test_pairing_outputs_are_the_logits_or_the_tasks_probabilities() -> None:
    torch = pytest.importorskip("torch")
    logits = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
    assert torch.equal(pairing_outputs(logits, task="multi_label_classification", space="logit"), logits)
    sigmoid = pairing_outputs(logits, task="multi_label_classification", space="probability")
    assert torch.allclose(sigmoid, torch.sigmoid(logits))
    softmax = pairing_outputs(logits, task="single_label_classification", space="probability")
    assert torch.allclose(softmax.sum(dim=1), torch.ones(2))


def _gap(model, tokenizer, pairs: list[tuple[str, str]]) -> float:
    left = predict_logits(model, tokenizer, [a for a, _ in pairs], max_length=32)
    right = predict_logits(model, tokenizer, [b for _, b in pairs], max_length=32)
    return float(np.abs(left - right).mean())


def _train_tiny(encoder_dir: Path, data: LabelledData, groups: list[int], *, weight: float, space: str):
    encoder = resolve_encoder(str(encoder_dir))
    seed_everything(0)
    model = load_sequence_classifier(encoder, labels=list(data.labels), task="multi_label_classification")
    tokenizer = load_tokenizer(encoder)
    config = FinetuneConfig(
        epochs=6, batch_size=8, learning_rate=3e-3, class_weights="none", early_stopping_patience=0,
        counterfactual_weight=weight, counterfactual_space=space, max_length=32,
    )
    finetune(model, tokenizer, train=data, validation=data, config=config, progress=False,
             counterfactual_groups=np.asarray(groups))
    return model, tokenizer


def test_probability_pairing_lets_agreeing_family_members_be_confident(tiny_encoder_dir: Path) -> None:
    # Families whose members share the label but not the surface form (a text and its
    # noisy or swapped copy). Pairing logits also rewards shrinking every logit, so the
    # model stays unsure of what it knows; pairing probabilities does not.
    toxic = ["you are a total idiot", "U R A TOTAL IDIOT!!", "what a stupid loser you are", "stupid lozer u are"]
    benign = ["the park was lovely today", "teh park was lovley 2day", "we had a nice lunch", "nice lunch w the team :)"]
    texts, targets, groups = [], [], []
    for family in range(6):
        for start, label in ((0, 1.0), (2, 1.0)):
            texts += toxic[start : start + 2]
            targets += [[label], [label]]
            groups += [2 * family, 2 * family]
        for start in (0, 2):
            texts += benign[start : start + 2]
            targets += [[0.0], [0.0]]
            groups += [100 + 2 * family + start, 100 + 2 * family + start]
    data = LabelledData(
        texts=texts, targets=np.asarray(targets, dtype=np.float32), labels=("toxicity",),
        task="multi_label_classification",
    )

    def margin(space: str) -> float:
        model, tokenizer = _train_tiny(tiny_encoder_dir, data, groups, weight=20.0, space=space)
        logits = predict_logits(model, tokenizer, toxic + benign, max_length=32)[:, 0]
        return float(logits[:4].mean() - logits[4:].mean())

    logit_margin, probability_margin = margin("logit"), margin("probability")
    assert probability_margin > 1.5 * logit_margin, (
        f"probability pairing margin {probability_margin:.3f} vs logit pairing {logit_margin:.3f}"
    )


def test_pairing_shrinks_the_logit_gap_between_swapped_texts(tiny_encoder_dir: Path) -> None:
    # A spurious cue: every "muslim" text is toxic and every "christian" text benign, so
    # plain training learns the group word; pairing each text with its swap forbids it.
    pairs = [
        ("muslim people are kind", "christian people are kind"),
        ("the muslim man was rude", "the christian man was rude"),
        ("my muslim friend is great", "my christian friend is great"),
        ("muslim people love food", "christian people love food"),
    ]
    texts, targets, groups = [], [], []
    for family, (muslim, christian) in enumerate(pairs * 3):
        texts += [muslim, christian]
        targets += [[1.0], [0.0]]
        groups += [family, family]
    data = LabelledData(
        texts=texts, targets=np.asarray(targets, dtype=np.float32), labels=("toxicity",),
        task="multi_label_classification",
    )

    def train(weight: float, space: str = "logit") -> float:
        encoder = resolve_encoder(str(tiny_encoder_dir))
        seed_everything(0)
        model = load_sequence_classifier(encoder, labels=["toxicity"], task="multi_label_classification")
        tokenizer = load_tokenizer(encoder)
        config = FinetuneConfig(
            epochs=6, batch_size=8, learning_rate=3e-3, class_weights="none",
            early_stopping_patience=0, counterfactual_weight=weight, max_length=32,
            counterfactual_space=space,
        )
        finetune(model, tokenizer, train=data, validation=data, config=config, progress=False,
                 counterfactual_groups=np.asarray(groups))
        return _gap(model, tokenizer, pairs)

    plain, paired, paired_probability = train(0.0), train(5.0), train(5.0, "probability")
    assert paired < 0.5 * plain, f"logit pairing left the gap at {paired:.3f} (plain {plain:.3f})"
    assert paired_probability < 0.5 * plain, (
        f"probability pairing left the gap at {paired_probability:.3f} (plain {plain:.3f})"
    )
