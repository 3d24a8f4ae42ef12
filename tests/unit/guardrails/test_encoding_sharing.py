"""One rule decides whether a tokenisation can be shared; one protocol says a scorer can take it."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails.contracts import TOXICITY_CATEGORIES
from fairgate.guardrails.encoding import (
    Encoding,
    EncodingMismatchError,
    Tokenization,
    can_share_encoding,
    tokenization_mismatch,
)
from fairgate.guardrails.guard import Guard
from fairgate.guardrails.normalize import TextNormalization
from fairgate.guardrails.onnx_model import OnnxTextModel
from fairgate.guardrails.policy import Policy
from fairgate.guardrails.scorers import OnnxToxicityScorer, reuses_encoding

NONE = TextNormalization.none()
SOCIAL = TextNormalization.social()


def test_the_rule_compares_tokenizer_normalisation_and_truncation() -> None:
    model = Tokenization("tok-A", 128, NONE)

    assert tokenization_mismatch(model, Tokenization("tok-A", 128, NONE)) is None
    assert "different tokenizer" in str(tokenization_mismatch(model, Tokenization("tok-B", 128, NONE)))
    assert "normalised with 'social', this model reads text normalised with 'none'" in str(
        tokenization_mismatch(model, Tokenization("tok-A", 128, SOCIAL))
    )
    assert tokenization_mismatch(model, Tokenization("tok-A", 64, NONE)) == (
        "truncated at 64 tokens, this model truncates at 128"
    )
    # A hand-built encoding that does not record its truncation is judged on the rest.
    assert tokenization_mismatch(model, Tokenization("tok-A", None, NONE)) is None


class Reader:
    def __init__(self, fingerprint: str = "tok-A", max_length: int = 128, normalization: Any = NONE) -> None:
        self.tokenizer_fingerprint = fingerprint
        self.max_length = max_length
        self.normalization = normalization


def test_can_share_encoding_is_the_rule_applied_to_two_models() -> None:
    assert can_share_encoding(Reader(), Reader())
    assert not can_share_encoding(Reader(), None)
    assert not can_share_encoding(Reader(), Reader(fingerprint="tok-B"))
    assert not can_share_encoding(Reader(), Reader(max_length=64))
    assert not can_share_encoding(Reader(), Reader(normalization=SOCIAL))


def _with_max_length(path: Path, max_length: int) -> Path:
    manifest = json.loads((path / "fairgate.json").read_text())
    manifest["max_length"] = max_length
    (path / "fairgate.json").write_text(json.dumps(manifest))
    return path


def test_a_model_refuses_an_encoding_truncated_at_another_length(model_dir_factory: Callable[..., Path]) -> None:
    long_path = model_dir_factory(labels=["a", "b"], task="single_label_classification", max_length=16)
    short_path = _with_max_length(model_dir_factory(labels=["a", "b"], task="single_label_classification"), 5)
    long, short = OnnxTextModel.from_directory(long_path), OnnxTextModel.from_directory(short_path)
    assert long.tokenizer_fingerprint == short.tokenizer_fingerprint  # same tokenizer file

    encoding = long.encode(["hello world nice day hello world nice day"])

    assert encoding.max_length == 16 and encoding.select([0]).max_length == 16
    assert long.accepts(encoding) and not short.accepts(encoding)
    assert not can_share_encoding(long, short)
    with pytest.raises(EncodingMismatchError, match="truncated at 16 tokens, this model truncates at 5; encode"):
        short.run(encoding)


def test_the_toxicity_scorer_re_encodes_an_encoding_of_another_truncation(
    guard_model_dir: Path, model_dir_factory: Callable[..., Path]
) -> None:
    scorer = OnnxToxicityScorer(model=OnnxTextModel.from_directory(guard_model_dir))
    other = OnnxTextModel.from_directory(
        _with_max_length(model_dir_factory(labels=["a", "b"], task="single_label_classification"), 3)
    )
    texts = ["hello world kill you"]  # "kill" is past 3 tokens: truncated away in ``other``'s encoding

    shared = scorer.score(texts, encoding=other.encode(texts))

    np.testing.assert_allclose(shared, scorer.score(texts), rtol=1e-6)
    assert shared[0, list(TOXICITY_CATEGORIES).index("threat")] > 0.99


# -- the scorer protocol: EncodingScorer and the wrappers around it ------------------------


class PlainScorer:
    categories: Sequence[str] = TOXICITY_CATEGORIES

    def __init__(self) -> None:
        self.encodings: list[Encoding | None] = []

    def score(self, texts: Sequence[str]) -> np.ndarray:
        self.encodings.append(None)
        return np.zeros((len(texts), len(self.categories)))


class SharingScorer(PlainScorer):
    tokenizer_fingerprint = "tok-A"

    def score(self, texts: Sequence[str], *, encoding: Encoding | None = None) -> np.ndarray:  # type: ignore[override]
        self.encodings.append(encoding)
        return np.zeros((len(texts), len(self.categories)))


class ExplicitWrapper:
    """A wrapper that offers ``tokenizer_fingerprint`` only when the scorer inside has one."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.categories = inner.categories

    def score(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        return np.asarray(self.inner.score(texts, **kwargs))


class ExplicitSharingWrapper(ExplicitWrapper):
    @property
    def tokenizer_fingerprint(self) -> str:
        return str(self.inner.tokenizer_fingerprint)


class ForwardingWrapper(ExplicitWrapper):
    """The older style: forwards the attribute through ``__getattr__``."""

    def __getattr__(self, name: str) -> Any:
        if name == "tokenizer_fingerprint":
            return getattr(self.inner, name)
        raise AttributeError(name)


@pytest.mark.parametrize(
    ("build", "shares"),
    [
        (PlainScorer, False),
        (SharingScorer, True),
        (lambda: ExplicitWrapper(PlainScorer()), False),
        (lambda: ExplicitSharingWrapper(SharingScorer()), True),
        (lambda: ForwardingWrapper(PlainScorer()), False),
        (lambda: ForwardingWrapper(SharingScorer()), True),
    ],
)
def test_the_guard_hands_its_encoding_exactly_to_scorers_that_take_one(
    build: Callable[[], Any], shares: bool
) -> None:
    scorer = build()
    inner = getattr(scorer, "inner", scorer)
    guard = Guard(policy=Policy.from_mapping({"rates": {"enabled": False}}), scorer=scorer, registry=CollectorRegistry())
    ids = np.array([[2, 4, 3]], dtype=np.int64)
    encoding = Encoding(ids, np.ones_like(ids), np.zeros_like(ids), "tok-A")

    guard.screen(["hello"], encoding=encoding)
    guard.screen(["hello"])

    assert reuses_encoding(scorer) is shares
    assert guard.shares_encoding is shares
    assert inner.encodings == ([encoding, None] if shares else [None, None])
