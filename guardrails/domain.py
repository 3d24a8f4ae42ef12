"""Reference statistics of how a classifier sees its in-domain inputs, and the OOD score.

The score is the Mahalanobis distance of an item's pooled sentence embedding (the vector
the classification head reads, exported as the ONNX graph's second output) to the nearest
class mean, under one covariance shared by the classes (Podolskiy et al. 2021, "Revisiting
Mahalanobis distance for transformer-based out-of-domain detection"). It is fitted at
build time on the training embeddings and calibrated on held-out in-domain ones (the
validation split): serving compares each item with the validation scores' quantile.

Numpy only: the build (:mod:`fairgate.models.domain_stats`) fits and writes it, serving
(:mod:`fairgate.guardrails.domain_monitor`) reads it. On disk: ``domain.npz`` in the model
directory (arrays, no pickles) described by the manifest's ``domain`` entry
(format ``fairgate-domain/1``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DOMAIN_FILE",
    "DOMAIN_FORMAT",
    "EMBEDDING_OUTPUT",
    "REPORTED_QUANTILES",
    "DomainReference",
    "DomainStatsError",
    "Threshold",
    "fit_domain_reference",
    "ledoit_wolf_shrinkage",
]

DOMAIN_FORMAT = "fairgate-domain/1"
DOMAIN_FILE = "domain.npz"
EMBEDDING_OUTPUT = "embedding"
"""The name of the pooled-embedding output the exporter adds to the classifier graph."""
REPORTED_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99, 0.999)
"""Quantiles of the validation scores recorded in the manifest (for people; serving reads the scores)."""
_MIN_SHRINKAGE = 1e-4  # keeps the covariance invertible when Ledoit-Wolf estimates 0


class DomainStatsError(ValueError):
    """Domain reference statistics are missing, malformed or cannot be fitted."""


@dataclass(frozen=True, slots=True)
class Threshold:
    """The score above which an item counts as out of domain, at one quantile.

    ``value`` is the validation scores' ``quantile`` (the order statistic at or above it);
    ``exceed`` of the ``n`` validation items score above it, so ``exceed / n`` is the share
    in-domain traffic is expected to show (at most ``1 - quantile``).
    """

    quantile: float
    value: float
    exceed: int
    n: int


@dataclass(frozen=True, eq=False)
class DomainReference:
    """Class means and the whitening of the shared covariance; one variant's validation scores.

    ``whitening`` is the Cholesky factor ``L`` of the precision matrix (``P = L L^T``), so a
    squared distance is a squared norm after one product: ``|x L - mu_c L|^2``.
    ``validation_scores`` are the held-out in-domain scores *as this variant computes them*
    (int8 embeddings differ a little from fp32 ones), sorted.
    """

    means: np.ndarray  # [k, d]
    whitening: np.ndarray  # [d, d]
    validation_scores: np.ndarray  # [n_validation], sorted
    classes: tuple[str, ...]
    variant: str = "fp32"
    _projected: np.ndarray = field(init=False, repr=False)  # means @ whitening
    _norms: np.ndarray = field(init=False, repr=False)  # their squared norms

    def __post_init__(self) -> None:
        k, d = self.means.shape
        if self.whitening.shape != (d, d):
            raise DomainStatsError(
                f"whitening has shape {self.whitening.shape}, expected {(d, d)} for {d}-dimensional means; "
                "rebuild the model's domain statistics"
            )
        if k != len(self.classes) or k < 1:
            raise DomainStatsError(f"{k} class means for classes {list(self.classes)}; rebuild the model")
        object.__setattr__(self, "_projected", self.means @ self.whitening)
        object.__setattr__(self, "_norms", np.sum(self._projected**2, axis=1))

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """Mahalanobis distance to the nearest class mean, ``float64 [n]``: one product per batch.

        ``|z - m_c|^2 = |z|^2 - 2 z.m_c + |m_c|^2`` with ``z = x L`` and ``m_c = mu_c L``
        (precomputed), so the batch costs ``[n, d] x [d, d]`` plus ``[n, d] x [d, k]``.
        """
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DomainStatsError(f"embeddings have shape {x.shape}, expected (n, {self.dim})")
        if len(x) == 0:
            return np.zeros(0, dtype=np.float64)
        z = x @ self.whitening
        squared = np.sum(z**2, axis=1)[:, None] - 2.0 * (z @ self._projected.T) + self._norms[None, :]
        distances: np.ndarray = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
        return distances

    def threshold(self, quantile: float) -> Threshold:
        """The validation scores' ``quantile`` (never interpolated below it) and how many exceed it."""
        if not 0.0 < quantile < 1.0:
            raise DomainStatsError(f"quantile {quantile} must be between 0 and 1 (e.g. 0.99)")
        scores = self.validation_scores
        n = len(scores)
        if n == 0:
            raise DomainStatsError("the model's domain statistics hold no validation scores; rebuild the model")
        index = min(n - 1, math.ceil(quantile * n) - 1)
        value = float(scores[max(0, index)])
        return Threshold(quantile=quantile, value=value, exceed=int(np.sum(scores > value)), n=n)

    def save(self, path: Path, *, validation_scores: Mapping[str, np.ndarray]) -> None:
        """Write ``domain.npz``: the means, the whitening and each variant's validation scores."""
        arrays = {"means": self.means, "whitening": self.whitening}
        for variant, scores in validation_scores.items():
            arrays[f"validation_{variant}"] = np.sort(np.asarray(scores, dtype=np.float64))
        np.savez(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path, *, entry: Mapping[str, Any], variant: str) -> DomainReference:
        """Read ``domain.npz`` for ``variant`` as described by the manifest's ``domain`` entry."""
        if entry.get("format") != DOMAIN_FORMAT:
            raise DomainStatsError(
                f"domain statistics format {entry.get('format')!r} is not {DOMAIN_FORMAT!r}; "
                "rebuild the model with this version of fairgate"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                key = f"validation_{variant}"
                if key not in data:
                    raise DomainStatsError(
                        f"{path} has no validation scores for the {variant} variant; rebuild the model"
                    )
                means = np.asarray(data["means"], dtype=np.float64)
                whitening = np.asarray(data["whitening"], dtype=np.float64)
                validation = np.asarray(data[key], dtype=np.float64)
        except DomainStatsError:
            raise
        except Exception as error:  # a truncated or empty file raises BadZipFile, EOFError, ...
            raise DomainStatsError(
                f"cannot read {path} ({type(error).__name__}: {error}); rebuild the model"
            ) from error
        if means.ndim != 2 or whitening.ndim != 2 or whitening.shape[0] != means.shape[1] or validation.ndim != 1:
            raise DomainStatsError(
                f"{path} has arrays of the wrong shape (means {means.shape}, whitening {whitening.shape}, "
                f"validation {validation.shape}); rebuild the model"
            )
        if validation.size == 0 or not np.all(np.isfinite(validation)):
            raise DomainStatsError(f"{path} has no finite validation scores for {variant}; rebuild the model")
        return cls(
            means=means,
            whitening=whitening,
            validation_scores=np.sort(validation),
            classes=tuple(str(c) for c in entry.get("classes", ())),
            variant=variant,
        )

    def with_validation(self, scores: np.ndarray, *, variant: str) -> DomainReference:
        """This reference calibrated on ``scores`` (one variant's validation scores)."""
        return DomainReference(
            means=self.means,
            whitening=self.whitening,
            validation_scores=np.sort(np.asarray(scores, dtype=np.float64)),
            classes=self.classes,
            variant=variant,
        )


def ledoit_wolf_shrinkage(centered: np.ndarray) -> float:
    """Ledoit-Wolf's estimate of the shrinkage towards a scaled identity (0..1).

    The same estimator as scikit-learn's ``ledoit_wolf_shrinkage`` (Ledoit & Wolf 2004),
    for already centred data; no scikit-learn at serving time.
    """
    n, d = centered.shape
    x2 = centered**2
    trace_terms = x2.sum(axis=0) / n
    mu = trace_terms.sum() / d
    beta_ = float(np.sum(x2.T @ x2))
    delta_ = float(np.sum((centered.T @ centered) ** 2)) / n**2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * trace_terms.sum() + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta <= 0 or delta <= 0 else float(beta / delta)


def fit_domain_reference(
    embeddings: np.ndarray,
    targets: Sequence[int] | np.ndarray,
    *,
    classes: Sequence[str],
    shrinkage: float | None = None,
) -> tuple[DomainReference, float]:
    """Class means and the shrunk shared covariance of ``embeddings``; returns (reference, shrinkage).

    The covariance is pooled over the classes (each row centred on its class mean) and shrunk
    towards ``trace/d * I``: ``(1 - s) S + s (trace(S)/d) I``, with ``s`` from Ledoit-Wolf
    when ``shrinkage`` is None (floored at 1e-4), so it stays invertible when there are fewer
    training items than dimensions. The reference has no validation scores yet
    (:meth:`DomainReference.with_validation`).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(targets, dtype=np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise DomainStatsError(f"embeddings {x.shape} and {len(y)} targets do not match; pass one target per row")
    if not np.all(np.isfinite(x)):
        raise DomainStatsError("training embeddings are not all finite; check the exported model's embedding output")
    k = len(classes)
    present = [c for c in range(k) if np.any(y == c)]
    if len(present) < k:
        missing = [classes[c] for c in range(k) if c not in present]
        raise DomainStatsError(f"no training items of class {missing}; every label needs examples")
    means = np.stack([x[y == c].mean(axis=0) for c in range(k)])
    centered = x - means[y]
    n, d = centered.shape
    covariance = centered.T @ centered / n
    s = ledoit_wolf_shrinkage(centered) if shrinkage is None else float(shrinkage)
    s = min(1.0, max(_MIN_SHRINKAGE, s))
    scale = float(np.trace(covariance)) / d
    if not scale > 0:
        raise DomainStatsError("training embeddings have zero variance; the model's embedding output is constant")
    shrunk = (1.0 - s) * covariance + s * scale * np.eye(d)
    precision = np.linalg.inv(shrunk)
    precision = (precision + precision.T) / 2.0
    whitening = np.linalg.cholesky(precision)
    reference = DomainReference(
        means=means, whitening=whitening, validation_scores=np.zeros(0), classes=tuple(classes)
    )
    return reference, s
