"""Toxicity scorers: a batch of texts in, a score per Detoxify category per text out.

The monitor talks to the small :class:`ToxicityScorer` protocol so back ends can plug in:
the ONNX guard model (serving; no torch) or the Detoxify package (the ``[train]`` extra).
A scorer that can also read a batch another model already tokenised implements
:class:`EncodingScorer`; :func:`reuses_encoding` is the one test for it, and the guard
uses nothing else to decide whether to hand a scorer the shared encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeGuard, runtime_checkable

import numpy as np

from fairgate.guardrails.contracts import MULTI_LABEL_TASK, TOXICITY_CATEGORIES
from fairgate.guardrails.encoding import Encoding
from fairgate.guardrails.manifest import Variant
from fairgate.guardrails.onnx_model import OnnxTextModel

__all__ = ["DetoxifyScorer", "EncodingScorer", "OnnxToxicityScorer", "ToxicityScorer", "reuses_encoding"]


@runtime_checkable
class ToxicityScorer(Protocol):
    """Scores a batch; ``score`` returns an array ``[n, len(categories)]`` in 0..1."""

    @property
    def categories(self) -> Sequence[str]: ...

    def score(self, texts: Sequence[str]) -> np.ndarray: ...


class EncodingScorer(ToxicityScorer, Protocol):
    """A scorer that can reuse a batch another model tokenised: ``score(texts, encoding=...)``.

    The contract, for scorers and for wrappers around them (a deadline, a fault injector):

    - ``tokenizer_fingerprint`` names the tokenizer the scorer reads with. Its presence is
      the marker (:func:`reuses_encoding`): a wrapper defines it exactly when the scorer
      it wraps has one, and then forwards ``encoding=`` unchanged.
    - ``score`` uses ``encoding`` only when it was made the way the scorer's own model
      would make it (``OnnxTextModel.accepts``, the one rule of
      :mod:`fairgate.guardrails.encoding`) and otherwise encodes ``texts`` itself, so a
      caller may always pass the encoding it has.
    """

    @property
    def tokenizer_fingerprint(self) -> str: ...

    def score(self, texts: Sequence[str], *, encoding: Encoding | None = None) -> np.ndarray: ...


def reuses_encoding(scorer: ToxicityScorer) -> TypeGuard[EncodingScorer]:
    """True when ``scorer`` is an :class:`EncodingScorer`: it has a ``tokenizer_fingerprint``.

    A plain attribute probe (``hasattr``), so every way a wrapper can provide the
    attribute counts: a property defined only on the wrapper class for scorers that have
    one, an instance attribute, or forwarding through ``__getattr__`` (``isinstance`` on
    the protocol would miss the last: from Python 3.12 it looks attributes up statically).
    """
    return hasattr(scorer, "tokenizer_fingerprint")


class OnnxToxicityScorer:
    """The guard model (``fairgate-toxicity``): a multi-label ONNX model, sigmoid per category."""

    def __init__(self, *, model: OnnxTextModel) -> None:
        if model.task != MULTI_LABEL_TASK:
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
