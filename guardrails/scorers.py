"""Toxicity scorers: a batch of texts in, a score per Detoxify category per text out.

The monitor talks to the small :class:`ToxicityScorer` protocol so back ends can plug in:
the ONNX guard model (serving; no torch) or the Detoxify package (the ``[train]`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeGuard, runtime_checkable

import numpy as np

from fairgate.guardrails.contracts import TOXICITY_CATEGORIES
from fairgate.guardrails.onnx_model import Encoding, OnnxTextModel, Variant


@runtime_checkable
class ToxicityScorer(Protocol):
    """Scores a batch; ``score`` returns an array ``[n, len(categories)]`` in 0..1."""

    @property
    def categories(self) -> Sequence[str]: ...

    def score(self, texts: Sequence[str]) -> np.ndarray: ...


class EncodingScorer(ToxicityScorer, Protocol):
    """A scorer that can reuse a batch another model tokenised: ``score(texts, encoding=...)``.

    It names its tokenizer (``tokenizer_fingerprint``) and ignores an encoding it cannot use.
    """

    @property
    def tokenizer_fingerprint(self) -> str: ...

    def score(self, texts: Sequence[str], *, encoding: Encoding | None = None) -> np.ndarray: ...


def reuses_encoding(scorer: ToxicityScorer) -> TypeGuard[EncodingScorer]:
    """True when ``scorer`` takes ``encoding=``: it has a ``tokenizer_fingerprint``.

    A plain attribute probe (``hasattr``), so wrappers that forward the attribute through
    ``__getattr__`` count too (``isinstance`` on a protocol would not, from Python 3.12).
    """
    return hasattr(scorer, "tokenizer_fingerprint")


class OnnxToxicityScorer:
    """The guard model (``fairgate-toxicity``): a multi-label ONNX model, sigmoid per category."""

    def __init__(self, *, model: OnnxTextModel) -> None:
        if model.task != "multi_label_classification":
            raise ValueError(
                f"the toxicity scorer needs a multi_label_classification model, got {model.task!r}; "
                "load the fairgate-toxicity model, not the classifier"
            )
        self.model = model

    @classmethod
    def from_directory(
        cls, path: str | Path, *, variant: Variant = "int8", intra_op_threads: int | None = None
    ) -> OnnxToxicityScorer:
        return cls(
            model=OnnxTextModel.from_directory(path, variant=variant, intra_op_threads=intra_op_threads)
        )

    @property
    def categories(self) -> Sequence[str]:
        return self.model.labels

    @property
    def tokenizer_fingerprint(self) -> str:
        return self.model.tokenizer_fingerprint

    def score(self, texts: Sequence[str], *, encoding: Encoding | None = None) -> np.ndarray:
        """Scores per category; pass ``encoding`` to reuse a batch another model already tokenised.

        An encoding from a different tokenizer or normalisation is ignored and the batch re-encoded.
        """
        if encoding is not None and not self.model.accepts(encoding):
            encoding = None
        return self.model.predict_proba(texts, encoding=encoding)


class DetoxifyScorer:
    """Scores with the Detoxify package (PyTorch). Needs the ``[train]`` extra.

    The import happens on construction, never at module import, so the library stays
    importable without torch.
    """

    def __init__(
        self,
        *,
        model_type: str = "original",
        checkpoint: str | None = None,
        device: str = "cpu",
        huggingface_config_path: str | None = None,
    ) -> None:
        try:
            from detoxify import Detoxify
        except ImportError as error:
            raise ImportError(
                "DetoxifyScorer needs the detoxify package (and torch): "
                "pip install 'fairgate[train]', or use OnnxToxicityScorer"
            ) from error
        self._model = Detoxify(
            model_type, checkpoint=checkpoint, device=device, huggingface_config_path=huggingface_config_path
        )

    @property
    def categories(self) -> Sequence[str]:
        return TOXICITY_CATEGORIES

    def score(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(TOXICITY_CATEGORIES)), dtype=np.float32)
        raw = self._model.predict(list(texts))
        columns = []
        for category in TOXICITY_CATEGORIES:
            values = raw.get(category)
            if values is None:
                raise KeyError(f"Detoxify output lacks {category!r}; got {sorted(raw)}")
            columns.append(np.asarray(values, dtype=np.float32).reshape(-1))
        return np.stack(columns, axis=1)
