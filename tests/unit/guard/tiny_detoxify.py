"""Tiny Detoxify-format checkpoints for the guard tests, built in the test, no network.

A checkpoint here has exactly the layout of the published ones (detoxify's
``convert_weights.py``): ``{"config": {"arch": {"args": ...}, "dataset": {"args":
{"classes": ...}}}, "state_dict": <HF keys>}``, around a tiny random BERT, plus the
"Hugging Face config directory" (config.json, vocab.txt, tokenizer.json) that
``--hf-config`` expects.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ["you", "are", "an", "idiot", "and", "i", "will", "hurt", "you", "stupid", "hate", "kill", "nice", "day", "great", "film", "thanks", "for", "the", "help", "women", "men", "muslim", "christian", "jewish", "people", "are", "good", "bad", "this", "is", "a", "the", "of", "to", "it", "was", "really", "not", "very", "what"]

ORIGINAL_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
UNBIASED_CLASSES = [
    "toxicity",
    "severe_toxicity",
    "obscene",
    "identity_attack",
    "insult",
    "threat",
    "sexual_explicit",
]
UNBIASED_IDENTITIES = [
    "male",
    "female",
    "homosexual_gay_or_lesbian",
    "christian",
    "jewish",
    "muslim",
    "black",
    "white",
    "psychiatric_or_mental_illness",
]


def tiny_bert_config(num_labels: int, vocab_size: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=num_labels,
    )


def write_hf_config_dir(directory: Path) -> Path:
    """A base-model directory as --hf-config wants it: config.json + tokenizer files."""
    from transformers import BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS))]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True)
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(directory)
    tiny_bert_config(num_labels=2, vocab_size=len(vocab)).save_pretrained(directory)
    return directory


def write_detoxify_checkpoint(
    path: Path,
    hf_config_dir: Path,
    *,
    layout: str = "original",
    seed: int = 0,
    lightning_prefix: bool = False,
) -> Path:
    """Save a random tiny BERT in Detoxify's checkpoint layout (``original`` or ``unbiased``)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    if layout == "original":
        classes, identities = ORIGINAL_CLASSES, []
    elif layout == "unbiased":
        classes, identities = UNBIASED_CLASSES, UNBIASED_IDENTITIES
    else:
        raise ValueError(layout)
    num_classes = len(classes) + len(identities)
    base = BertConfig.from_pretrained(hf_config_dir)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_bert_config(num_classes, base.vocab_size))
    # Spread the head so different outputs really differ (random init is near zero).
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0)
        model.classifier.bias.copy_(torch.linspace(-2.0, 2.0, num_classes))
    dataset_args: dict = {"classes": classes}
    if identities:
        dataset_args["identity_classes"] = identities
    config = {
        "name": f"tiny_{layout}",
        "arch": {
            "type": "BERT",
            "args": {
                "num_classes": num_classes,
                "model_type": "bert-base-uncased",
                "model_name": "BertForSequenceClassification",
                "tokenizer_name": "BertTokenizer",
            },
        },
        "dataset": {"type": "JigsawDataOriginal", "args": dataset_args},
    }
    state = model.state_dict()
    if lightning_prefix:
        state = {f"model.{key}": value for key, value in state.items()}
    torch.save({"config": config, "state_dict": state}, path)
    return path


def reference_logits(checkpoint: Path, hf_config_dir: Path, texts: list[str]):
    """The full checkpoint's logits, the way Detoxify computes them (all outputs)."""
    import torch
    from transformers import BertForSequenceClassification, BertTokenizerFast

    loaded = torch.load(checkpoint, map_location="cpu", weights_only=False)
    num = loaded["config"]["arch"]["args"]["num_classes"]
    base = BertForSequenceClassification.config_class.from_pretrained(hf_config_dir)
    model = BertForSequenceClassification(tiny_bert_config(num, base.vocab_size))
    state = {k.removeprefix("model."): v for k, v in loaded["state_dict"].items()}
    model.load_state_dict(state)
    model.eval()
    tokenizer = BertTokenizerFast.from_pretrained(hf_config_dir)
    with torch.no_grad():
        enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
        return model(**enc).logits.numpy()
