"""The exceptions of the model pipeline.

Each names the bad value and the fix, so the CLI can print ``str(error)`` as is and
tests can assert on the text.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DataError",
    "DeployGateError",
    "EmbeddingOutputError",
    "EncoderSourceError",
    "ExportParityError",
    "FairgateModelError",
    "FairnessGateError",
    "QuantizationError",
    "StoreError",
]


class FairgateModelError(Exception):
    """Base class: every error of ``models`` that the CLI reports without a traceback."""


class DataError(FairgateModelError, ValueError):
    """Labelled data that cannot be used: missing file or column, empty, unknown label."""


class EncoderSourceError(FairgateModelError, ValueError):
    """A base encoder source (``bundled``, hub id, directory) that cannot be loaded."""


class ExportParityError(FairgateModelError):
    """The exported ONNX model disagrees with the PyTorch model beyond tolerance.

    Raised before anything is stored, so a broken export never reaches serving.
    """


class EmbeddingOutputError(FairgateModelError):
    """The exported graph's pooled embedding (the classification head's input) cannot be found."""


class QuantizationError(FairgateModelError, ValueError):
    """An int8 variant that cannot be made: no calibration texts, unknown method or mode."""


class DeployGateError(FairgateModelError):
    """The model fails a fairness gate (parity difference or impact ratio) of the build."""


class FairnessGateError(DeployGateError):
    """The guard flags benign identity sentences too often, or too unevenly across groups.

    Raised by ``fairgate build guard`` before anything is stored. ``failures`` lists each
    failed check as ``{"figure", "group", "value", "limit"}`` (group None for the overall
    rate) for callers that act on it; the message says the same in words, with the fix.
    """

    def __init__(self, message: str, *, failures: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.failures: list[dict[str, Any]] = list(failures or [])


class StoreError(FairgateModelError, LookupError):
    """A model tag that is missing from the BentoML store or is not a fairgate model."""
