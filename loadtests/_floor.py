"""The floor: both ONNX Runtime sessions called in-process on batches, no HTTP, no guardrails.

This is what the hardware can do with fairgate's models; the service's end-to-end rate
is reported as a fraction of it. Texts are tokenised once per batch and shared by the
two models when their tokenizers are the same file (as the service does). Besides
plain batches (padded to their longest text), the floor also tries length-bucketed
batches (sorted by length, run in sub-batches of similar length), so that a service that
buckets cannot look better than the floor it is compared with.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict


class FloorResult(BaseModel):
    """Texts per second of classifier + guard on batches of ``batch_size``."""

    model_config = ConfigDict(frozen=True)

    variant: str
    batch_size: int
    bucket_size: int | None
    batches: int
    texts: int
    duration_s: float
    texts_per_s: float
    cpu_ms_per_text: float
    shared_tokenization: bool
    onnx_variant: str
    intra_op_threads: int | None


def load_pair(
    classifier_dir: Path, guard_dir: Path, *, variant: str = "int8", intra_op_threads: int | None = None
) -> tuple[Any, Any]:
    """Load the two model directories with the contract's runtime wrapper.

    Without the wrapper's own length buckets: the floor measures plain and bucketed
    batches as separate variants (``run_pair``'s ``bucket_size``), so each label says
    what ran.
    """
    from fairgate.guardrails.onnx_model import OnnxTextModel

    options = {"variant": variant, "intra_op_threads": intra_op_threads, "bucket_size": None}
    classifier = OnnxTextModel.from_directory(classifier_dir, **options)
    guard = OnnxTextModel.from_directory(guard_dir, **options)
    return classifier, guard


def shares_tokenizer(classifier: Any, guard: Any) -> bool:
    from fairgate.guardrails.onnx_model import can_share_encoding

    return can_share_encoding(classifier, guard)


def length_buckets(lengths: Sequence[int], bucket_size: int) -> list[np.ndarray]:
    """Row indices sorted by token length, cut into groups of ``bucket_size``."""
    if bucket_size < 1:
        raise ValueError(f"bucket_size={bucket_size} must be at least 1")
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + bucket_size] for i in range(0, len(order), bucket_size)]


def run_pair(classifier: Any, guard: Any, texts: Sequence[str], *, bucket_size: int | None = None) -> None:
    """One batch through both models: one tokenisation when the tokenizers match."""
    encoding = classifier.encode(texts)
    guard_encoding = encoding if shares_tokenizer(classifier, guard) else guard.encode(texts)
    if bucket_size is None:
        classifier.run(encoding)
        guard.run(guard_encoding)
        return
    lengths = encoding.attention_mask.sum(axis=1)
    for rows in length_buckets(lengths, bucket_size):
        classifier.run(encoding.select(rows))
        guard.run(guard_encoding.select(rows))


def measure_floor(
    classifier: Any,
    guard: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    bucket_size: int | None = None,
    duration_s: float = 15.0,
    max_batches: int = 10_000,
    warmup_batches: int = 2,
    intra_op_threads: int | None = None,
    clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] = time.process_time,
) -> FloorResult:
    """Cycle ``texts`` in consecutive batches for ``duration_s`` (or ``max_batches``)."""
    if not texts:
        raise ValueError("measure_floor needs texts")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    batches = [list(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    batches = [b for b in batches if len(b) == batch_size] or batches
    for index in range(min(warmup_batches, len(batches))):
        run_pair(classifier, guard, batches[index], bucket_size=bucket_size)
    done = 0
    count = 0
    started, cpu_started = clock(), cpu_clock()
    while count < max_batches and clock() - started < duration_s:
        batch = batches[count % len(batches)]
        run_pair(classifier, guard, batch, bucket_size=bucket_size)
        done += len(batch)
        count += 1
    elapsed, cpu = clock() - started, cpu_clock() - cpu_started
    name = f"batch {batch_size}" + (f", length-sorted sub-batches of {bucket_size}" if bucket_size else "")
    return FloorResult(
        variant=name,
        batch_size=batch_size,
        bucket_size=bucket_size,
        batches=count,
        texts=done,
        duration_s=round(elapsed, 3),
        texts_per_s=round(done / elapsed, 3) if elapsed > 0 else 0.0,
        cpu_ms_per_text=round(cpu * 1000 / done, 3) if done else 0.0,
        shared_tokenization=shares_tokenizer(classifier, guard),
        onnx_variant=getattr(classifier, "variant", "unknown"),
        intra_op_threads=intra_op_threads,
    )
