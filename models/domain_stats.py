"""Build-time domain reference statistics for the domain-shift monitor.

After export, the classifier's training texts go through the exported fp32 graph (the
serving runtime, normalisation included) for their pooled embeddings; the class means
and the shrunk shared covariance are fitted on them (:func:`fit_domain_reference`), and
the validation split, held out from training, is scored by *each* ONNX variant, because
serving compares an item's score with the scores of the variant it runs (int8 embeddings
differ a little from fp32 ones). The arrays go to ``domain.npz``; the manifest's
``domain`` entry names the file and records the figures (format ``fairgate-domain/1``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fairgate.guardrails.domain import (
    DOMAIN_FILE,
    DOMAIN_FORMAT,
    REPORTED_QUANTILES,
    DomainStatsError,
    fit_domain_reference,
)
from fairgate.guardrails.manifest import VARIANTS, ModelManifest, read_manifest

__all__ = ["DomainData", "embed_texts", "write_domain_statistics"]

logger = logging.getLogger(__name__)

MAX_TRAIN_ROWS = 20_000
"""Training rows fitted at most (a seeded sample beyond): the covariance of 384 dimensions
is well estimated long before, and the build stays bounded on large data sets."""


@dataclass(frozen=True, kw_only=True)
class DomainData:
    """In-domain texts for the reference statistics: the training split with its class
    indices, and held-out in-domain texts (the validation split). Raw texts: the exported
    model applies its own normalisation, exactly as in serving."""

    train_texts: Sequence[str]
    train_targets: Sequence[int]
    validation_texts: Sequence[str]
    seed: int = 0


def embed_texts(model: Any, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """Pooled embeddings ``[n, d]`` of ``texts`` through an :class:`OnnxTextModel` with the output."""
    parts = []
    for start in range(0, len(texts), batch_size):
        _, embeddings = model.run_outputs(model.encode(list(texts[start : start + batch_size])))
        if embeddings is None:
            raise DomainStatsError(
                f"{model.path}: the graph has no embedding output; export it with embedding_output=True"
            )
        parts.append(embeddings)
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, 0))


def write_domain_statistics(model_dir: Path, data: DomainData, *, batch_size: int = 64) -> dict[str, Any]:
    """Fit, write ``domain.npz`` and record it in ``fairgate.json``; returns the manifest entry.

    Raises :class:`DomainStatsError` when the split is too small to calibrate on (no
    validation texts) or the embeddings are degenerate.
    """
    from fairgate.guardrails.onnx_model import OnnxTextModel

    started = time.perf_counter()
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    if not data.validation_texts:
        raise DomainStatsError("domain statistics need held-out in-domain texts; the validation split is empty")
    texts, targets = list(data.train_texts), np.asarray(data.train_targets, dtype=np.int64)
    if len(texts) > MAX_TRAIN_ROWS:
        rows = np.sort(np.random.default_rng(data.seed).choice(len(texts), MAX_TRAIN_ROWS, replace=False))
        texts, targets = [texts[i] for i in rows], targets[rows]
    models = {variant: OnnxTextModel.from_directory(model_dir, variant=variant) for variant in VARIANTS}
    train = embed_texts(models["fp32"], texts, batch_size=batch_size)
    reference, shrinkage = fit_domain_reference(train, targets, classes=list(manifest.labels))
    validation: dict[str, np.ndarray] = {
        variant: reference.score(embed_texts(model, list(data.validation_texts), batch_size=batch_size))
        for variant, model in models.items()
    }
    reference.save(model_dir / DOMAIN_FILE, validation_scores=validation)
    entry: dict[str, Any] = {
        "format": DOMAIN_FORMAT,
        "file": DOMAIN_FILE,
        "score": "mahalanobis distance to the nearest class mean, shared covariance (Podolskiy et al. 2021)",
        "classes": list(manifest.labels),
        "dim": reference.dim,
        "n_train": len(texts),
        "n_validation": len(data.validation_texts),
        "shrinkage": round(shrinkage, 6),
        "validation_quantiles": {
            variant: {f"{q:g}": round(float(np.quantile(scores, q)), 4) for q in REPORTED_QUANTILES}
            for variant, scores in validation.items()
        },
    }
    fields = manifest.as_json()
    fields["domain"] = entry
    ModelManifest.model_validate(fields).write(model_dir)
    logger.info(
        "domain statistics: %d training and %d validation texts, %d dimensions, shrinkage %.3g, "
        "int8 validation 0.99 quantile %.3g (%.1f s)",
        len(texts), len(data.validation_texts), reference.dim, shrinkage,
        entry["validation_quantiles"]["int8"]["0.99"], time.perf_counter() - started,
    )
    return {**entry, "seconds": round(time.perf_counter() - started, 2)}
