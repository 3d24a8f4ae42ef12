"""A stored model loads back through the serving runtime and predicts what PyTorch predicted."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fairgate.models.encoder import load_sequence_classifier, load_tokenizer, resolve_encoder
from fairgate.models.export import export_model_directory
from fairgate.models.finetune import predict_logits, seed_everything
from fairgate.models.store import get_stored_model, list_stored_models, model_exists, save_model_directory

TEXTS = ["the product is good", "terrible service never again", "i love this movie",
         "awful food and rude staff", "great quality fast delivery", "it works", "so so",
         "the staff were kind but the price was too high", "never buy this", "best ever"]


def test_stored_model_predicts_the_same_labels_as_before_export(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    from fairgate.guardrails.onnx_model import OnnxTextModel
    from fairgate.models.datasets import LabelledData
    from fairgate.models.finetune import FinetuneConfig, finetune

    encoder = resolve_encoder(str(tiny_encoder_dir))
    tokenizer = load_tokenizer(encoder)
    seed_everything(3)
    labels = ["negative", "neutral", "positive"]
    model = load_sequence_classifier(encoder, labels=labels)
    # A few quick steps so the labels are varied and far from ties (random heads are not).
    targets = np.arange(len(TEXTS)) % 3
    data = LabelledData(texts=TEXTS, targets=targets, labels=tuple(labels))
    config = FinetuneConfig(epochs=15, batch_size=5, learning_rate=5e-3, layer_decay=1.0,
                            early_stopping_patience=0, max_length=32)
    finetune(model, tokenizer, train=data, validation=data, config=config, progress=False)
    before = predict_logits(model, tokenizer, TEXTS, max_length=32).argmax(axis=1)
    assert len(set(before.tolist())) > 1  # the check below can fail

    export_model_directory(model, tokenizer, tmp_path / "m", task="single_label_classification",
                           labels=labels, max_length=32)
    tag = save_model_directory("roundtrip-test", tmp_path / "m",
                               metadata={"role": "test", "labels": labels, "metrics": {"accuracy": float("nan")}})
    assert model_exists("roundtrip-test")
    stored = get_stored_model(tag)
    assert stored.metadata["labels"] == labels
    assert stored.metadata["metrics"]["accuracy"] == "NaN"  # kept visible, never a silent 0 or gap
    assert any(m.tag == tag for m in list_stored_models())

    for variant in ("fp32", "int8"):
        runtime = OnnxTextModel.from_directory(stored.path, variant=variant)
        assert list(runtime.labels) == labels
        after = runtime.predict_proba(TEXTS).argmax(axis=1)
        agreement = float(np.mean(after == before))
        assert agreement == 1.0, f"{variant}: labels differ from PyTorch on {np.flatnonzero(after != before)}"


def test_missing_tag_is_a_store_error() -> None:
    import pytest

    from fairgate.models.errors import StoreError

    with pytest.raises(StoreError, match="fairgate models"):
        get_stored_model("no-such-model-here")
    assert not model_exists("no-such-model-here")
