"""The Mahalanobis OOD score and its reference statistics (guardrails/domain.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fairgate.guardrails.domain import (
    DOMAIN_FORMAT,
    DomainReference,
    DomainStatsError,
    fit_domain_reference,
    ledoit_wolf_shrinkage,
)


def _data(seed: int = 0, n: int = 300, d: int = 8, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, k, size=n)
    centres = rng.normal(scale=3.0, size=(k, d))
    mixing = rng.normal(size=(d, d))
    return centres[targets] + rng.normal(size=(n, d)) @ mixing, targets


def test_score_matches_a_direct_numpy_computation() -> None:
    x, y = _data()
    reference, shrinkage = fit_domain_reference(x, y, classes=["a", "b", "c"], shrinkage=0.1)
    assert shrinkage == pytest.approx(0.1)
    # Direct: class means, pooled covariance shrunk towards trace/d * I, inverse, min over classes.
    means = np.stack([x[y == c].mean(axis=0) for c in range(3)])
    centred = x - means[y]
    cov = centred.T @ centred / len(x)
    d = x.shape[1]
    shrunk = 0.9 * cov + 0.1 * np.trace(cov) / d * np.eye(d)
    precision = np.linalg.inv(shrunk)
    queries = np.random.default_rng(1).normal(scale=4.0, size=(50, d))
    direct = np.array(
        [min(float((q - m) @ precision @ (q - m)) for m in means) for q in queries]
    )
    np.testing.assert_allclose(reference.score(queries), np.sqrt(direct), rtol=1e-9, atol=1e-9)


def test_ledoit_wolf_matches_scikit_learn() -> None:
    sklearn_covariance = pytest.importorskip("sklearn.covariance")
    x, _ = _data(seed=2, n=40, d=30)  # fewer rows than dimensions squared: real shrinkage
    centred = x - x.mean(axis=0)
    assert ledoit_wolf_shrinkage(centred) == pytest.approx(
        sklearn_covariance.ledoit_wolf_shrinkage(centred, assume_centered=True), rel=1e-9
    )


def test_fewer_rows_than_dimensions_is_still_invertible() -> None:
    x, y = _data(seed=3, n=20, d=64, k=2)
    reference, shrinkage = fit_domain_reference(x, y, classes=["a", "b"])
    assert 0 < shrinkage <= 1
    assert np.all(np.isfinite(reference.score(x)))


def test_threshold_is_the_order_statistic_and_counts_what_exceeds_it() -> None:
    x, y = _data()
    reference, _ = fit_domain_reference(x, y, classes=["a", "b", "c"])
    calibrated = reference.with_validation(np.arange(1.0, 201.0), variant="int8")
    threshold = calibrated.threshold(0.99)
    assert threshold.value == 198.0  # ceil(0.99 * 200) = 198th smallest
    assert (threshold.exceed, threshold.n) == (2, 200)
    with pytest.raises(DomainStatsError, match="between 0 and 1"):
        calibrated.threshold(1.5)


def test_save_and_load_round_trip_per_variant(tmp_path: Path) -> None:
    x, y = _data()
    reference, _ = fit_domain_reference(x, y, classes=["a", "b", "c"])
    path = tmp_path / "domain.npz"
    reference.save(path, validation_scores={"fp32": np.array([3.0, 1.0, 2.0]), "int8": np.array([4.0, 5.0])})
    entry = {"format": DOMAIN_FORMAT, "file": "domain.npz", "classes": ["a", "b", "c"]}
    loaded = DomainReference.load(path, entry=entry, variant="int8")
    np.testing.assert_allclose(loaded.score(x[:10]), reference.score(x[:10]))
    np.testing.assert_array_equal(loaded.validation_scores, [4.0, 5.0])
    assert loaded.variant == "int8"
    with pytest.raises(DomainStatsError, match="rebuild the model with this version"):
        DomainReference.load(path, entry={**entry, "format": "fairgate-domain/99"}, variant="int8")


def test_fit_refuses_a_class_without_examples() -> None:
    x, _ = _data(k=2)
    with pytest.raises(DomainStatsError, match=r"no training items of class \['c'\]"):
        fit_domain_reference(x, np.zeros(len(x), dtype=int), classes=["a", "c"])


def test_wrong_embedding_width_names_the_expected_shape() -> None:
    x, y = _data()
    reference, _ = fit_domain_reference(x, y, classes=["a", "b", "c"])
    with pytest.raises(DomainStatsError, match=r"expected \(n, 8\)"):
        reference.score(np.zeros((2, 5)))


@pytest.mark.parametrize("damage", ["truncated", "empty", "two_dimensional_validation"])
def test_damaged_statistics_are_a_domain_stats_error_not_a_crash(tmp_path: Path, damage: str) -> None:
    """Serving turns the monitor off on DomainStatsError; any other exception would stop the start."""
    x, y = _data()
    reference, _ = fit_domain_reference(x, y, classes=["a", "b", "c"])
    path = tmp_path / "domain.npz"
    validation = np.ones((2, 3)) if damage == "two_dimensional_validation" else np.array([1.0, 2.0])
    np.savez(path, means=reference.means, whitening=reference.whitening, validation_fp32=validation)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    entry = {"format": DOMAIN_FORMAT, "file": "domain.npz", "classes": ["a", "b", "c"]}
    with pytest.raises(DomainStatsError, match="rebuild the model"):
        DomainReference.load(path, entry=entry, variant="fp32")
