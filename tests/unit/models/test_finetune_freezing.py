"""Freezing really freezes; layer-wise LR decay orders the learning rates; runs repeat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fairgate.models.datasets import LabelledData
from fairgate.models.encoder import load_sequence_classifier, load_tokenizer, resolve_encoder
from fairgate.models.finetune import (
    FinetuneConfig,
    finetune,
    freeze_parameters,
    layerwise_parameter_groups,
    seed_everything,
)

TEXTS = [
    "the product is good", "terrible service", "i love this movie", "awful food",
    "great quality", "broken on arrival", "nice staff", "rude people",
]


def _data(n_repeat: int = 2) -> LabelledData:
    texts = TEXTS * n_repeat
    targets = np.asarray([0, 1] * (len(texts) // 2), dtype=np.int64)[::-1].copy()
    return LabelledData(texts=texts, targets=targets, labels=("negative", "positive"))


def _model(encoder_dir: Path, seed: int = 0):
    encoder = resolve_encoder(str(encoder_dir))
    seed_everything(seed)
    return load_sequence_classifier(encoder, labels=["negative", "positive"]), load_tokenizer(encoder)


def _snapshot(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_frozen_parameters_do_not_change_after_training(tiny_encoder_dir: Path) -> None:
    import torch

    model, tokenizer = _model(tiny_encoder_dir)
    before = _snapshot(model)
    config = FinetuneConfig(
        epochs=1, batch_size=4, learning_rate=1e-2, freeze_embeddings=True, freeze_layers=1,
        early_stopping_patience=0, weight_decay=0.1,
    )
    result = finetune(model, tokenizer, train=_data(), validation=_data(1), config=config, progress=False)
    assert result.steps == 4
    after = dict(model.named_parameters())
    frozen = [n for n in before if n.startswith(("bert.embeddings.", "bert.encoder.layer.0."))]
    trained = [n for n in before if n.startswith(("bert.encoder.layer.1.", "classifier."))]
    assert frozen and trained
    for name in frozen:
        assert not after[name].requires_grad
        assert torch.equal(before[name], after[name]), f"{name} changed although frozen"
    changed = [n for n in trained if not torch.equal(before[n], after[n])]
    assert len(changed) == len(trained), f"unchanged trainable parameters: {set(trained) - set(changed)}"


def test_freeze_counts_and_too_many_layers(tiny_encoder_dir: Path) -> None:
    model, _ = _model(tiny_encoder_dir)
    total = sum(p.numel() for p in model.parameters())
    trainable, frozen = freeze_parameters(model, embeddings=False, layers=99)
    assert trainable + frozen == total
    head = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("bert.encoder.", "bert.embeddings.")))
    embeddings = sum(p.numel() for p in model.bert.embeddings.parameters())
    assert trainable == head + embeddings


def test_layerwise_decay_orders_learning_rates(tiny_encoder_dir: Path) -> None:
    model, _ = _model(tiny_encoder_dir)
    groups = layerwise_parameter_groups(model, learning_rate=1e-3, layer_decay=0.5, weight_decay=0.01)
    by_depth = {g["depth"]: g["lr"] for g in groups}
    # tiny BERT: embeddings depth 0, layers 1..2, head 3
    assert by_depth == {0: pytest.approx(1e-3 * 0.125), 1: pytest.approx(2.5e-4),
                        2: pytest.approx(5e-4), 3: pytest.approx(1e-3)}
    assert all(g["weight_decay"] == 0.0 for g in groups if all(p.ndim == 1 for p in g["params"]))


def test_same_seed_gives_identical_weights(tiny_encoder_dir: Path) -> None:
    import torch

    config = FinetuneConfig(epochs=2, batch_size=4, early_stopping_patience=0, seed=7)
    weights = []
    for _ in range(2):
        model, tokenizer = _model(tiny_encoder_dir, seed=7)
        finetune(model, tokenizer, train=_data(), validation=_data(1), config=config, progress=False)
        weights.append(_snapshot(model))
    assert all(torch.equal(weights[0][n], weights[1][n]) for n in weights[0])


def test_early_stopping_restores_best_validation_loss(tiny_encoder_dir: Path) -> None:
    model, tokenizer = _model(tiny_encoder_dir)
    # A huge learning rate makes validation loss worsen after the first evaluation.
    config = FinetuneConfig(
        epochs=6, batch_size=4, learning_rate=1.0, layer_decay=1.0, warmup_ratio=0.0,
        early_stopping_patience=1, evaluations_per_epoch=2,
    )
    result = finetune(model, tokenizer, train=_data(), validation=_data(1), config=config, progress=False)
    losses = [h["validation_loss"] for h in result.history]
    assert result.best_validation_loss == pytest.approx(min(losses))
    if result.stopped_early:
        assert result.steps < 6 * 4
    import torch

    from fairgate.models.finetune import _encode, _validation_loss  # the restored model has the best loss

    val = _data(1)
    rows = _encode(tokenizer, val.texts, 128)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 1.0]))
    assert _validation_loss(model, rows, val, loss_fn, 0, 64) == pytest.approx(result.best_validation_loss, rel=1e-4)


def test_multi_label_training_uses_float_targets(tiny_encoder_dir: Path) -> None:
    encoder = resolve_encoder(str(tiny_encoder_dir))
    seed_everything(0)
    labels = ["toxicity", "insult"]
    model = load_sequence_classifier(encoder, labels=labels, task="multi_label_classification")
    tokenizer = load_tokenizer(encoder)
    targets = np.asarray([[1, 1], [0, 0], [1, 0], [0, 0]] * 2, dtype=np.float32)
    data = LabelledData(texts=TEXTS, targets=targets, labels=tuple(labels), task="multi_label_classification")
    result = finetune(model, tokenizer, train=data, validation=data,
                      config=FinetuneConfig(epochs=1, batch_size=4), progress=False)
    assert result.steps == 2 and np.isfinite(result.best_validation_loss)
