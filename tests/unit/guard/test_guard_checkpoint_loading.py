"""A Detoxify checkpoint loads offline into a six-output model in the guard's order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fairgate.models.guard import (
    CATEGORIES,
    CheckpointFormatError,
    keep_categories,
    load_detoxify_checkpoint,
)
from tests.unit.guard.tiny_detoxify import (
    ORIGINAL_CLASSES,
    UNBIASED_CLASSES,
    reference_logits,
    write_detoxify_checkpoint,
)

TEXTS = ["you are an idiot", "what a nice day", "i will hurt you", "thanks for the help"]


def _guard_logits(converted, texts: list[str]) -> np.ndarray:
    import torch

    enc = converted.tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        return converted.model(**enc).logits.numpy()


def test_original_layout_keeps_six_outputs_renamed(original_checkpoint: Path, hf_config_dir: Path):
    converted = load_detoxify_checkpoint(original_checkpoint, hf_config_dir=hf_config_dir)
    full = reference_logits(original_checkpoint, hf_config_dir, TEXTS)
    ours = _guard_logits(converted, TEXTS)
    assert ours.shape == (len(TEXTS), 6)
    # original's order already is ours; only the names differ (toxic -> toxicity, ...).
    np.testing.assert_allclose(ours, full, atol=1e-6)
    assert converted.model.config.id2label == dict(enumerate(CATEGORIES))
    assert converted.model.config.problem_type == "multi_label_classification"
    meta = converted.metadata["detoxify"]
    assert meta["classes"] == ORIGINAL_CLASSES
    assert meta["dropped_outputs"] == []
    assert meta["model_name"] == "BertForSequenceClassification"


def test_unbiased_layout_reorders_and_drops_extra_outputs(
    unbiased_checkpoint: Path, hf_config_dir: Path
):
    converted = load_detoxify_checkpoint(unbiased_checkpoint, hf_config_dir=hf_config_dir)
    full = reference_logits(unbiased_checkpoint, hf_config_dir, TEXTS)
    assert full.shape[1] == 16
    ours = _guard_logits(converted, TEXTS)
    order = [UNBIASED_CLASSES.index(c) for c in CATEGORIES]  # threat/identity_attack swap
    assert order == [0, 1, 2, 5, 4, 3]
    np.testing.assert_allclose(ours, full[:, order], atol=1e-6)
    meta = converted.metadata["detoxify"]
    assert meta["kept_outputs"] == dict(zip(CATEGORIES, order, strict=True))
    assert "sexual_explicit" in meta["dropped_outputs"]
    assert "muslim" in meta["dropped_outputs"] and len(meta["dropped_outputs"]) == 10


def test_lightning_prefixed_state_dict_is_accepted(tmp_path: Path, hf_config_dir: Path):
    path = write_detoxify_checkpoint(
        tmp_path / "lightning.ckpt", hf_config_dir, lightning_prefix=True
    )
    converted = load_detoxify_checkpoint(path, hf_config_dir=hf_config_dir)
    np.testing.assert_allclose(
        _guard_logits(converted, TEXTS), reference_logits(path, hf_config_dir, TEXTS), atol=1e-6
    )


def test_loading_does_not_touch_the_network(
    original_checkpoint: Path, hf_config_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    converted = load_detoxify_checkpoint(original_checkpoint, hf_config_dir=hf_config_dir)
    assert converted.model.config.num_labels == 6


def test_not_a_detoxify_checkpoint_names_the_keys(tmp_path: Path, hf_config_dir: Path):
    import torch

    path = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointFormatError, match=r"needs the keys 'config' and 'state_dict' \(found \['weights'\]\)"):
        load_detoxify_checkpoint(path, hf_config_dir=hf_config_dir)


def test_garbage_file_is_a_clear_error(tmp_path: Path, hf_config_dir: Path):
    path = tmp_path / "garbage.ckpt"
    path.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointFormatError, match="cannot read .* as a torch checkpoint"):
        load_detoxify_checkpoint(path, hf_config_dir=hf_config_dir)


def test_config_dir_of_another_architecture_is_rejected(
    original_checkpoint: Path, hf_config_dir: Path, tmp_path: Path
):
    other = tmp_path / "roberta"
    other.mkdir()
    config = json.loads((hf_config_dir / "config.json").read_text())
    config["model_type"] = "roberta"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointFormatError, match="is a 'roberta' config but the checkpoint is a BertForSequenceClassification"):
        load_detoxify_checkpoint(original_checkpoint, hf_config_dir=other)


def test_config_dir_of_another_size_is_rejected(
    original_checkpoint: Path, hf_config_dir: Path, tmp_path: Path
):
    other = tmp_path / "bigger"
    other.mkdir()
    config = json.loads((hf_config_dir / "config.json").read_text())
    config["hidden_size"] = 32
    config["intermediate_size"] = 64
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointFormatError, match="does not fit BertForSequenceClassification"):
        load_detoxify_checkpoint(original_checkpoint, hf_config_dir=other)


def test_checkpoint_without_a_guard_category_names_it(tmp_path: Path, hf_config_dir: Path):
    import torch

    path = write_detoxify_checkpoint(tmp_path / "c.ckpt", hf_config_dir)
    loaded = torch.load(path, weights_only=False)
    loaded["config"]["dataset"]["args"]["classes"] = ["toxic", "severe_toxic", "obscene", "spam", "insult", "identity_hate"]
    torch.save(loaded, path)
    with pytest.raises(CheckpointFormatError, match="lack the guard categories threat"):
        load_detoxify_checkpoint(path, hf_config_dir=hf_config_dir)


def test_roberta_style_head_is_sliced_at_out_proj():
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=40, num_labels=16,
    )
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(config).eval()
    ids = torch.randint(3, 50, (3, 7))
    with torch.no_grad():
        full = model(input_ids=ids).logits.numpy()
    model, kept = keep_categories(model, UNBIASED_CLASSES, source="test")
    with torch.no_grad():
        sliced = model(input_ids=ids).logits.numpy()
    assert model.classifier.out_proj.out_features == 6
    np.testing.assert_allclose(sliced, full[:, kept], atol=1e-6)
