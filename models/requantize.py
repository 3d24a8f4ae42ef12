"""Re-quantise a stored model's fp32 graph (``fairgate quantize``) and store it as a new version.

A stored model keeps its fp32 ONNX graph, so its int8 variant can be remade without
retraining: static int8 for a model stored with dynamic int8, say. There is no PyTorch
model here, so the gate compares the new int8 graph with the stored fp32 graph (which
the build already checked against PyTorch): int8 label agreement on held-out texts must
reach ``min_agreement`` or nothing is stored. The batch dependence (max |score alone -
score inside a batch|) is measured and recorded, since removing it is why static exists.
"""

from __future__ import annotations

import csv
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fairgate.models.errors import DataError, ExportParityError
from fairgate.models.export import QuantizationMode, write_int8_variant
from fairgate.models.static_int8 import StaticQuantization, select_calibration_texts

__all__ = ["RequantizeResult", "batch_dependence", "int8_agreement", "read_texts", "requantize_directory"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RequantizeResult:
    """What ``requantize_directory`` wrote and measured."""

    quantization: dict[str, Any]
    parity: dict[str, Any]
    batch_dependence: float


def read_texts(path: Path, *, column: str = "text") -> list[str]:
    """Texts of a CSV/TSV (its ``column``) or of a plain file (one text per line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file {path} does not exist; pass an existing CSV/TSV or one-text-per-line file")
    if path.suffix.lower() in {".csv", ".tsv"}:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise DataError(
                    f"{path} has no column {column!r} (columns: {', '.join(reader.fieldnames or [])}); "
                    "pass --text-column NAME"
                )
            texts = [row[column] for row in reader if row.get(column)]
    else:
        texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise DataError(f"{path} holds no texts")
    return texts


def _decisions(logits: np.ndarray, task: str) -> np.ndarray:
    from fairgate.guardrails.contracts import MULTI_LABEL_TASK

    return logits > 0.0 if task == MULTI_LABEL_TASK else logits.argmax(axis=1)


def int8_agreement(fp32: np.ndarray, int8: np.ndarray, task: str) -> tuple[float, float]:
    """(label agreement, max |logit difference|) of int8 against fp32 logits."""
    agreement = float(np.mean(_decisions(int8, task) == _decisions(fp32, task)))
    return agreement, float(np.max(np.abs(int8 - fp32))) if fp32.size else 0.0


def batch_dependence(model: Any, texts: Sequence[str], *, batch_size: int = 16) -> float:
    """Max |probability alone - probability inside a batch| over ``texts``.

    Batches are cut from the texts sorted by length, so every batch mixes lengths and
    pads; ``model`` is an ``OnnxTextModel`` (``predict_proba``).
    """
    items = list(texts)
    alone = np.concatenate([model.predict_proba([t]) for t in items])
    order = sorted(range(len(items)), key=lambda i: len(items[i]))
    batched = np.empty_like(alone)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batched[rows] = model.predict_proba([items[i] for i in rows])
    return float(np.max(np.abs(alone - batched))) if items else 0.0


def requantize_directory(
    model_dir: Path,
    *,
    mode: QuantizationMode,
    calibration_texts: Sequence[str],
    parity_texts: Sequence[str],
    static: StaticQuantization | None = None,
    min_agreement: float = 0.99,
    threads: int = 1,
) -> RequantizeResult:
    """Rewrite ``model_dir``'s int8 graph in ``mode`` and gate it against its fp32 graph.

    Raises :class:`ExportParityError` (the directory's int8 file is then restored) when
    int8 label agreement on ``parity_texts`` is below ``min_agreement``. Parity texts that
    were drawn for calibration are left out of the gate, so one file can serve for both.
    """
    from fairgate.guardrails.manifest import read_manifest
    from fairgate.guardrails.onnx_model import OnnxTextModel

    model_dir = Path(model_dir)
    static = static or StaticQuantization()
    if mode == "static":
        drawn = set(select_calibration_texts(calibration_texts, limit=static.max_texts, seed=static.seed))
        parity_texts = [t for t in parity_texts if t not in drawn]
    if not parity_texts:
        raise DataError("no parity texts are left apart from the calibration texts; pass held-out --parity-texts")
    int8_file = read_manifest(model_dir).resolve_files(model_dir, "int8")[0]
    fp32 = OnnxTextModel.from_directory(model_dir, variant="fp32", intra_op_threads=threads)
    names = fp32.input_names

    def encode(texts: list[str]) -> dict[str, np.ndarray]:
        # The manifest's normalisation and tokenizer: what serving feeds the graph.
        return dict(fp32.encode(texts).as_feeds(names))

    with tempfile.TemporaryDirectory(prefix="fairgate-requantize-") as scratch:
        backup = Path(scratch) / "int8.onnx"
        shutil.copyfile(int8_file, backup)
        record = write_int8_variant(
            model_dir,
            mode=mode,
            calibration_texts=list(calibration_texts),
            encode=encode,
            static=static,
            keep_fp32=static.keep_fp32_suffixes,  # --keep-fp32 holds for --mode dynamic too
        )
        int8 = OnnxTextModel.from_directory(model_dir, variant="int8", intra_op_threads=threads)
        reference = fp32.run(fp32.encode(list(parity_texts)))
        candidate = int8.run(int8.encode(list(parity_texts)))
        agreement, max_diff = int8_agreement(reference, candidate, fp32.task)
        if agreement < min_agreement:
            shutil.copyfile(backup, int8_file)
            raise ExportParityError(
                f"{mode} int8 of {model_dir} agrees with fp32 on {agreement:.4f} of {len(parity_texts)} texts, "
                f"below {min_agreement:.4f}; nothing was stored. Try --calibration-method percentile or "
                "--mode dynamic, or loosen --int8-min-agreement if the difference is understood"
            )
    dependence = batch_dependence(int8, list(parity_texts)[:96])
    logger.info(
        "%s int8: agreement %.4f, max |logit diff| %.3g, batch dependence %.3g",
        mode, agreement, max_diff, dependence,
    )
    parity = {
        "n": len(parity_texts),
        "reference": "fp32 onnx",
        "int8_label_agreement": agreement,
        "int8_max_abs_diff": max_diff,
        "int8_min_agreement": min_agreement,
    }
    return RequantizeResult(quantization=record, parity=parity, batch_dependence=dependence)
