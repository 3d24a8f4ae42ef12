"""Checkpoint selection on validation accuracy / macro-F1, and the guard's recipe left as it was."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

import numpy as np
import pytest

from fairgate.models.datasets import LabelledData
from fairgate.models.encoder import load_sequence_classifier, load_tokenizer, resolve_encoder
from fairgate.models.finetune import FinetuneConfig, finetune, seed_everything, single_label_scores

TEXTS = [
    "the product is good", "terrible service", "i love this movie", "awful food",
    "great quality", "broken on arrival", "nice staff", "rude people",
]
# The module, not the function ``fairgate.models.finetune`` that the package re-exports.
finetune_module = importlib.import_module("fairgate.models.finetune")
VALIDATION_TARGETS = np.asarray([1, 0, 1, 0, 1, 0, 1, 0, 1, 0], dtype=np.int64)


def _train() -> LabelledData:
    targets = np.asarray([1, 0] * (len(TEXTS) // 2), dtype=np.int64)
    return LabelledData(texts=TEXTS, targets=targets, labels=("negative", "positive"))


def _validation() -> LabelledData:
    return LabelledData(texts=[TEXTS[i % len(TEXTS)] for i in range(10)], targets=VALIDATION_TARGETS,
                        labels=("negative", "positive"))


def _model(encoder_dir: Path):
    encoder = resolve_encoder(str(encoder_dir))
    seed_everything(0)
    return load_sequence_classifier(encoder, labels=["negative", "positive"]), load_tokenizer(encoder)


def _logits_with_accuracy(accuracy: float) -> np.ndarray:
    """Validation logits whose argmax gets ``accuracy`` of VALIDATION_TARGETS right."""
    n_right = round(accuracy * len(VALIDATION_TARGETS))
    predicted = VALIDATION_TARGETS.copy()
    predicted[n_right:] = 1 - predicted[n_right:]
    logits = np.zeros((len(predicted), 2), dtype=np.float32)
    logits[np.arange(len(predicted)), predicted] = 1.0
    return logits


def _scripted(monkeypatch: pytest.MonkeyPatch, evaluations: list[tuple[float, float]]) -> list[dict]:
    """Each validation pass returns the next (loss, accuracy); the weights seen are kept."""
    seen: list[dict] = []

    def fake_pass(model, rows, data, loss_fn, pad_id, batch_size):
        loss, accuracy = evaluations[len(seen)]
        seen.append(copy.deepcopy(model.state_dict()))
        return loss, _logits_with_accuracy(accuracy)

    monkeypatch.setattr(finetune_module, "_validation_pass", fake_pass)
    return seen


# Loss is lowest at the 2nd evaluation, accuracy highest at the 3rd: loss and accuracy disagree.
DISAGREE = [(0.50, 0.6), (0.40, 0.7), (0.45, 0.9), (0.60, 0.8)]


@pytest.mark.parametrize(("metric", "best_evaluation"), [("loss", 1), ("accuracy", 2)])
def test_selection_metric_picks_and_restores_its_checkpoint(
    tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch, metric: str, best_evaluation: int
) -> None:
    import torch

    seen = _scripted(monkeypatch, DISAGREE)
    model, tokenizer = _model(tiny_encoder_dir)
    config = FinetuneConfig(epochs=4, batch_size=4, learning_rate=1e-2, early_stopping_patience=0,
                            selection_metric=metric)  # type: ignore[arg-type]
    result = finetune(model, tokenizer, train=_train(), validation=_validation(), config=config, progress=False)
    assert len(result.history) == 4 and result.steps == 8
    assert [h["validation_accuracy"] for h in result.history] == pytest.approx([0.6, 0.7, 0.9, 0.8])
    assert result.best_step == result.history[best_evaluation]["step"]
    assert result.best_validation_loss == pytest.approx(DISAGREE[best_evaluation][0])
    assert result.selection_metric == metric
    expected_score = DISAGREE[best_evaluation][0 if metric == "loss" else 1]
    assert result.best_validation_score == pytest.approx(expected_score)
    restored = model.state_dict()
    assert all(torch.equal(restored[k], seen[best_evaluation][k]) for k in restored)
    assert not all(torch.equal(restored[k], seen[-1][k]) for k in restored)  # not simply the last


def test_accuracy_tie_goes_to_lower_loss_and_drives_early_stopping(
    tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2nd ties the 1st on accuracy with a lower loss (an improvement); the 3rd is worse and the
    # 4th ties with a higher loss: two evaluations without improvement stop training.
    _scripted(monkeypatch, [(0.6, 0.7), (0.5, 0.7), (0.3, 0.6), (0.55, 0.7), (0.1, 0.9)])
    model, tokenizer = _model(tiny_encoder_dir)
    config = FinetuneConfig(epochs=5, batch_size=4, early_stopping_patience=2, selection_metric="accuracy")
    result = finetune(model, tokenizer, train=_train(), validation=_validation(), config=config, progress=False)
    assert result.stopped_early and len(result.history) == 4
    assert result.best_step == result.history[1]["step"]
    assert result.best_validation_loss == pytest.approx(0.5)
    # Selecting on loss, the same figures keep improving: no early stop, the last one wins.
    _scripted(monkeypatch, [(0.6, 0.7), (0.5, 0.7), (0.3, 0.6), (0.55, 0.7), (0.1, 0.9)])
    model, tokenizer = _model(tiny_encoder_dir)
    config = FinetuneConfig(epochs=5, batch_size=4, early_stopping_patience=2)
    result = finetune(model, tokenizer, train=_train(), validation=_validation(), config=config, progress=False)
    assert not result.stopped_early and result.best_step == result.history[-1]["step"]


def test_macro_f1_selection_and_scores_match_sklearn(tiny_encoder_dir: Path) -> None:
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, size=200)
    logits = rng.normal(size=(200, 3))
    scores = single_label_scores(targets, logits, 3)
    assert scores["accuracy"] == pytest.approx(accuracy_score(targets, logits.argmax(1)))
    assert scores["macro_f1"] == pytest.approx(f1_score(targets, logits.argmax(1), average="macro"))
    model, tokenizer = _model(tiny_encoder_dir)
    config = FinetuneConfig(epochs=3, batch_size=4, learning_rate=1e-2, early_stopping_patience=0,
                            selection_metric="macro_f1")
    result = finetune(model, tokenizer, train=_train(), validation=_validation(), config=config, progress=False)
    best_f1 = max(h["validation_macro_f1"] for h in result.history)
    chosen = next(h for h in result.history if h["step"] == result.best_step)
    assert chosen["validation_macro_f1"] == result.best_validation_score == pytest.approx(best_f1)


def test_multi_label_refuses_metric_selection_and_keeps_its_history(tiny_encoder_dir: Path) -> None:
    encoder = resolve_encoder(str(tiny_encoder_dir))
    seed_everything(0)
    model = load_sequence_classifier(encoder, labels=["a", "b"], task="multi_label_classification")
    tokenizer = load_tokenizer(encoder)
    targets = np.asarray([[1, 0], [0, 1], [1, 1], [0, 0]] * 2, dtype=np.float32)
    data = LabelledData(texts=TEXTS, targets=targets, labels=("a", "b"), task="multi_label_classification")
    with pytest.raises(ValueError, match="single-label"):
        finetune(model, tokenizer, train=data, validation=data, progress=False,
                 config=FinetuneConfig(epochs=1, batch_size=4, selection_metric="accuracy"))
    result = finetune(model, tokenizer, train=data, validation=data, progress=False,
                      config=FinetuneConfig(epochs=1, batch_size=4))
    assert set(result.history[0]) == {"epoch", "step", "train_loss", "validation_loss"}


# What FinetuneConfig gave every caller that leaves a field unset before the classifier got
# its own recipe; the guard leaves all of these but its own few unset.
FINETUNE_DEFAULTS_BEFORE = {
    "epochs": 3, "batch_size": 32, "learning_rate": 1e-4, "layer_decay": 0.9, "weight_decay": 0.01,
    "warmup_ratio": 0.1, "max_length": 128, "freeze_embeddings": False, "freeze_layers": 0,
    "class_weights": "balanced", "early_stopping_patience": 2, "evaluations_per_epoch": 1,
    "max_grad_norm": 1.0, "seed": 0, "eval_batch_size": 64, "group_by_length": True,
    "counterfactual_weight": 0.0, "counterfactual_space": "probability", "selection_metric": "loss",
}


def test_finetune_config_defaults_are_unchanged() -> None:
    assert FinetuneConfig().model_dump() == FINETUNE_DEFAULTS_BEFORE


@pytest.mark.parametrize("with_families", [False, True])
def test_the_guard_trains_with_the_same_settings_as_before(
    tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch, with_families: bool
) -> None:
    """The default guard build's effective fine-tuning config, captured at the finetune call."""
    encoder_module = importlib.import_module("fairgate.models.encoder")
    from fairgate.models.guard._build import GuardBuildConfig
    from fairgate.models.guard._categories import CATEGORIES
    from fairgate.models.guard._csv import GuardDataset
    from fairgate.models.guard._splits import GuardSplits
    from fairgate.models.guard._train import finetune_guard

    captured: dict = {}

    class Captured(Exception):
        pass

    def fake_finetune(model, tokenizer, *, config, **kwargs):
        captured["config"] = config
        raise Captured

    real_resolve = encoder_module.resolve_encoder
    monkeypatch.setattr(encoder_module, "resolve_encoder", lambda base: real_resolve(str(tiny_encoder_dir)))
    monkeypatch.setattr(finetune_module, "finetune", fake_finetune)
    targets = np.zeros((4, len(CATEGORIES)), dtype=np.float32)
    targets[::2, 0] = 1.0
    rows = GuardDataset(texts=TEXTS[:4], targets=targets, mask=np.ones_like(targets, dtype=bool),
                        layout="test", columns={})
    splits = GuardSplits(train=rows, validation=rows, test=rows)
    families = np.asarray([0, 0, -1, -1]) if with_families else None
    with pytest.raises(Captured):
        finetune_guard(splits, GuardBuildConfig(), source="test", progress=False, families=families)
    expected = FINETUNE_DEFAULTS_BEFORE | {
        "learning_rate": 3e-4, "freeze_embeddings": True, "freeze_layers": 4, "class_weights": "none",
        "counterfactual_weight": 2.0 if with_families else 0.0,
    }
    assert captured["config"].model_dump() == expected


def _cli_config(monkeypatch: pytest.MonkeyPatch, *options: str):
    """The ClassifierBuildConfig that ``fairgate build classifier OPTIONS`` hands to the build."""
    from fairgate.models import classifier
    from fairgate.models.errors import DataError
    from fairgate.service.cli import main

    captured = {}

    def fake_build(config, *, progress=True):
        captured["config"] = config
        raise DataError("captured")

    monkeypatch.setattr(classifier, "build_classifier", fake_build)
    assert main(["build", "classifier", "--no-progress", *options]) == 1
    return captured["config"]


def test_build_classifier_defaults_are_the_classifier_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    from fairgate.models.classifier import CLASSIFIER_FINETUNE, ClassifierBuildConfig

    assert ClassifierBuildConfig().finetune == CLASSIFIER_FINETUNE
    assert _cli_config(monkeypatch).finetune == CLASSIFIER_FINETUNE
    assert CLASSIFIER_FINETUNE.selection_metric == "accuracy"
    chosen = _cli_config(monkeypatch, "--selection-metric", "macro_f1", "--no-freeze-embeddings",
                         "--freeze-layers", "2", "--epochs", "2").finetune
    assert chosen == CLASSIFIER_FINETUNE.model_copy(
        update={"selection_metric": "macro_f1", "freeze_embeddings": False, "freeze_layers": 2, "epochs": 2}
    )
