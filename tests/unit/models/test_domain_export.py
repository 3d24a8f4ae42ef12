"""The pooled-embedding output and the domain statistics a classifier build writes, and
serving both kinds of model directory: with them and from before them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails import Guard, OnnxTextModel, Policy
from fairgate.guardrails.domain import DOMAIN_FILE, EMBEDDING_OUTPUT
from fairgate.models.domain_stats import embed_texts
from fairgate.service._pipeline import GuardedClassifier
from tests.helpers.tiny_models import make_tiny_model_dir, tiny_domain_data, tiny_sentences

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def domain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("domain") / "model", seed=3, domain=True)


@pytest.fixture(scope="module")
def old_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model_dir(tmp_path_factory.mktemp("old") / "model", seed=3)


def _pytorch_pooled(texts: list[str], seed: int = 3) -> np.ndarray:
    """The embedding the head reads, from the same random model in PyTorch (make_tiny_model_dir's recipe)."""
    import tempfile

    import torch

    from fairgate.models.encoder import load_sequence_classifier, load_tokenizer, resolve_encoder
    from fairgate.models.export import hf_encoder
    from tests.helpers.tiny_models import make_tiny_encoder_dir

    with tempfile.TemporaryDirectory() as scratch:
        encoder = resolve_encoder(str(make_tiny_encoder_dir(Path(scratch) / "enc", seed=seed)))
        tokenizer = load_tokenizer(encoder)
        torch.manual_seed(seed)
        model = load_sequence_classifier(encoder, labels=["negative", "positive"], task="single_label_classification")
        model.eval()
        feeds = {k: torch.from_numpy(v) for k, v in hf_encoder(tokenizer, max_length=64)(texts).items()}
        with torch.inference_mode():
            outputs = model.bert(**feeds)
        return outputs.pooler_output.numpy()


def test_embedding_output_matches_the_pytorch_pooled_embedding(domain_dir: Path) -> None:
    texts = ["the product is good", "terrible service never again", "i love this movie", "it works"]
    expected = _pytorch_pooled(texts)
    fp32 = OnnxTextModel.from_directory(domain_dir, variant="fp32", bucket_size=None)
    logits, embeddings = fp32.run_outputs(fp32.encode(texts))
    assert embeddings is not None and embeddings.shape == expected.shape
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)
    np.testing.assert_allclose(logits, fp32.run(fp32.encode(texts)), atol=1e-6)
    int8 = OnnxTextModel.from_directory(domain_dir, variant="int8", bucket_size=2)  # buckets keep row order
    _, quantised = int8.run_outputs(int8.encode(texts))
    assert quantised is not None
    np.testing.assert_allclose(quantised, expected, atol=0.05)


def test_manifest_records_the_output_and_the_versioned_statistics(domain_dir: Path) -> None:
    manifest = json.loads((domain_dir / "fairgate.json").read_text(encoding="utf-8"))
    assert manifest["embedding_output"] == EMBEDDING_OUTPUT
    entry = manifest["domain"]
    assert entry["format"] == "fairgate-domain/1" and entry["file"] == DOMAIN_FILE
    assert (entry["n_train"], entry["n_validation"], entry["dim"]) == (200, 100, 32)
    assert set(entry["validation_quantiles"]) == {"fp32", "int8"}
    assert (domain_dir / DOMAIN_FILE).is_file()


def test_stored_validation_scores_are_the_variants_own(domain_dir: Path) -> None:
    data = tiny_domain_data(2, seed=3)
    for variant in ("fp32", "int8"):
        model = OnnxTextModel.from_directory(domain_dir, variant=variant)
        reference, why = model.domain_reference()
        assert why is None and reference is not None and reference.variant == variant
        direct = reference.score(embed_texts(model, list(data.validation_texts)))
        np.testing.assert_allclose(reference.validation_scores, np.sort(direct), rtol=1e-6)


def test_a_model_built_before_the_statistics_serves_with_the_monitor_off(old_dir: Path) -> None:
    model = OnnxTextModel.from_directory(old_dir, variant="int8")
    reference, why = model.domain_reference()
    assert reference is None and why is not None and "no embedding output" in why
    guard = _guard(reference, why)
    pipeline = GuardedClassifier(classifier=model, guard=guard)
    results = pipeline.classify([_Item(text) for text in tiny_sentences(8, seed=9)])
    assert all(r.label is not None and r.domain_score is None for r in results)
    status = guard.status().domain
    assert status is not None and not status.enabled and status.reason == why


def test_a_current_model_scores_every_classified_item(domain_dir: Path) -> None:
    model = OnnxTextModel.from_directory(domain_dir, variant="int8")
    reference, why = model.domain_reference()
    guard = _guard(reference, why)
    pipeline = GuardedClassifier(classifier=model, guard=guard)
    results = pipeline.classify([_Item(text) for text in tiny_sentences(8, seed=9)])
    assert all(r.domain_score is not None and r.domain_score >= 0 for r in results)
    status = guard.status().domain
    assert status is not None and status.enabled and status.n == 8


class _Item:
    def __init__(self, text: str) -> None:
        self.text = text
        self.group: str | None = None


def _guard(reference: object, why: str | None) -> Guard:
    policy = Policy.from_mapping(
        {"toxicity": {"enabled": False}, "rates": {"enabled": False}, "counterfactual": {"enabled": False}}
    )
    return Guard(
        policy=policy,
        scorer=None,
        registry=CollectorRegistry(),
        domain=reference,  # type: ignore[arg-type]
        domain_unavailable=why or "",
    )


def test_the_model_card_shows_the_domain_reference(domain_dir: Path) -> None:
    from fairgate.models.card import domain_section

    entry = json.loads((domain_dir / "fairgate.json").read_text(encoding="utf-8"))["domain"]
    lines = domain_section({"domain": entry})
    assert lines[0] == "## Domain reference (domain-shift monitor)"
    assert "| variant | 0.5 | 0.9 | 0.95 | 0.99 | 0.999 |" in lines
    assert any(line.startswith("| int8 |") for line in lines)
    assert domain_section({}) == []  # a model built before the statistics: no section
