"""Fast factories of tiny models for tests: seconds, no network, real code paths.

``make_tiny_encoder_dir`` writes a random tiny BERT usable as ``--base DIR``;
``make_tiny_model_dir`` runs it through the real export (optimum, optimisation, int8)
into a model directory per docs/CONTRACTS.md section 1; ``save_tiny_model_to_store``
puts one in the BentoML store with the real store code; ``save_tiny_store`` puts the
served pair (classifier and guard) there. Outputs are random-weight models: they
predict nonsense, deterministically for a seed.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fairgate.guardrails.policy import TOXICITY_CATEGORIES

if TYPE_CHECKING:
    from fairgate.models.domain_stats import DomainData

__all__ = [
    "GUARD_LABELS",
    "TINY_WORDS",
    "TinyStore",
    "make_tiny_encoder_dir",
    "make_tiny_model_dir",
    "save_tiny_model_to_store",
    "save_tiny_store",
    "tiny_domain_data",
    "tiny_sentences",
]

# The tiny guard's outputs are the served guard's: Detoxify's categories, in their order.
GUARD_LABELS: tuple[str, ...] = TOXICITY_CATEGORIES

# Enough words for readable test sentences; anything else splits into characters.
TINY_WORDS = ["the", "a", "an", "and", "or", "but", "not", "no", "is", "are", "was", "were", "be", "this", "that", "it", "i", "you", "he", "she", "they", "we", "my", "your", "his", "her", "their", "our", "good", "bad", "great", "terrible", "awful", "excellent", "love", "hate", "like", "product", "service", "movie", "film", "food", "place", "staff", "price", "quality", "fast", "slow", "broken", "works", "very", "really", "quite", "so", "too", "happy", "sad", "angry", "kind", "rude", "nice", "poor", "best", "worst", "ever", "never", "always", "people", "person", "woman", "man", "women", "men", "muslim", "christian", "jewish", "black", "white", "asian", "gay", "straight", "old", "young", "disabled", "idiot", "stupid", "kill", "you're", "are", "am", "of", "to", "in", "on", "for", "with", "would", "recommend", "again", "buy", "bought", "return", "returned", "delivery", "arrived", "late", "on", "time"]


def _vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    words = list(TINY_WORDS)
    tokens = specials + chars + ["##" + c for c in string.ascii_lowercase + string.digits] + words
    return list(dict.fromkeys(tokens))  # no duplicates: WordPiece ids must be contiguous


def make_tiny_encoder_dir(
    path: Path | str,
    *,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
) -> Path:
    """A random tiny BERT encoder + WordPiece fast tokenizer, saved with save_pretrained."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(_vocab()) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(_vocab()),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=128,
        type_vocab_size=2,
    )
    torch.manual_seed(seed)
    model = BertModel(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_tiny_model_dir(
    path: Path | str,
    *,
    task: str = "single_label_classification",
    labels: Sequence[str] = ("negative", "positive"),
    seed: int = 0,
    max_length: int = 64,
    domain: bool = False,
) -> Path:
    """A complete fairgate model directory built by the real export code, from random weights.

    Writes ``model.onnx``, ``model.int8.onnx``, tokenizer files, ``fairgate.json`` and
    ``MODEL_CARD.md`` into ``path`` and checks parity against the PyTorch model.
    ``domain``: also the pooled-embedding output and domain reference statistics
    (fitted on seeded sentences of :data:`TINY_WORDS`, random labels), as a classifier
    build writes them; without it the directory is one built before they existed.
    """
    import torch

    from fairgate.models.card import render_model_card
    from fairgate.models.encoder import load_sequence_classifier, load_tokenizer, resolve_encoder
    from fairgate.models.export import check_parity, export_model_directory

    path = Path(path)
    encoder_dir = make_tiny_encoder_dir(path.parent / f".{path.name}-encoder", seed=seed)
    encoder = resolve_encoder(str(encoder_dir))
    tokenizer = load_tokenizer(encoder)
    torch.manual_seed(seed)
    model = load_sequence_classifier(encoder, labels=list(labels), task=task)
    model.eval()
    export = export_model_directory(
        model, tokenizer, path, task=task, labels=list(labels), max_length=max_length, embedding_output=domain
    )
    if domain:
        from fairgate.models.domain_stats import write_domain_statistics

        write_domain_statistics(path, tiny_domain_data(len(labels), seed=seed))
    texts = [
        "the product is good",
        "terrible service never again",
        "i love this movie",
        "the food was awful and the staff rude",
        "great quality fast delivery",
        "it works",
    ]
    parity = check_parity(
        torch_model=model,
        tokenizer=tokenizer,
        model_dir=path,
        texts=texts,
        task=task,
        max_length=max_length,
        int8_min_agreement=0.0,  # random weights: int8 may flip near-ties; fp32 is checked
    )
    (path / "MODEL_CARD.md").write_text(
        render_model_card(
            name=path.name,
            task=task,
            labels=list(labels),
            base=encoder.describe(),
            data={"source": "none (random weights, test model)"},
            training={},
            metrics={},
            parity=parity.as_dict(),
            export=export,
        ),
        encoding="utf-8",
    )
    return path


def tiny_sentences(n: int, *, seed: int = 0, words: Sequence[str] = TINY_WORDS) -> list[str]:
    """``n`` seeded sentences of 3-10 words drawn from ``words``."""
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 10))) for _ in range(n)]


def tiny_domain_data(n_labels: int, *, seed: int = 0, n_train: int = 200, n_validation: int = 100) -> DomainData:
    """In-domain data for a tiny model's domain statistics: seeded sentences, random labels."""
    import random

    from fairgate.models.domain_stats import DomainData

    rng = random.Random(seed + 1)
    return DomainData(
        train_texts=tiny_sentences(n_train, seed=seed),
        train_targets=[rng.randrange(n_labels) for _ in range(n_train)],
        validation_texts=tiny_sentences(n_validation, seed=seed + 100),
        seed=seed,
    )


def save_tiny_model_to_store(
    name: str,
    *,
    task: str = "single_label_classification",
    labels: Sequence[str] = ("negative", "positive"),
    seed: int = 0,
    domain: bool = False,
) -> str:
    """Build a tiny model directory and save it to the BentoML store; returns the tag."""
    import tempfile

    from fairgate.models.store import save_model_directory

    with tempfile.TemporaryDirectory(prefix="fairgate-tiny-") as scratch:
        directory = make_tiny_model_dir(Path(scratch) / "model", task=task, labels=labels, seed=seed, domain=domain)
        return save_model_directory(
            name,
            directory,
            metadata={
                "role": "test",
                "task": task,
                "labels": list(labels),
                "base": "tiny random BERT (tests.helpers.tiny_models)",
            },
        )


@dataclass(frozen=True)
class TinyStore:
    """The served pair in the store: what ``FAIRGATE_CLASSIFIER_TAG``/``FAIRGATE_GUARD_TAG`` name."""

    classifier_tag: str
    guard_tag: str
    guard_path: Path  # the guard's model directory, for scoring texts in the test itself


def save_tiny_store() -> TinyStore:
    """Tiny classifier (seed 3) and tiny guard (seed 4) in the current BentoML store.

    Building both takes tens of seconds: tests share one pair per session (the
    ``tiny_store`` fixture in tests/integration/conftest.py) rather than call this.
    """
    import bentoml

    # The classifier has the embedding output and domain statistics, as a current build.
    classifier_tag = save_tiny_model_to_store("fairgate-classifier", seed=3, domain=True)
    guard_tag = save_tiny_model_to_store(
        "fairgate-toxicity", task="multi_label_classification", labels=GUARD_LABELS, seed=4
    )
    return TinyStore(classifier_tag, guard_tag, Path(bentoml.models.get(guard_tag).path))
