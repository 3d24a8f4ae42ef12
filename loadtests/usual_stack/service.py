"""The usual stack as a BentoML service: ``bentoml serve loadtests.usual_stack.service:UsualStack``.

Same HTTP shape as fairgate (``POST /classify`` one object, batchable; ``POST
/classify_batch``; the same request and result schemas), so the benchmark sends both the
same bytes. What differs is what most BentoML + Hugging Face services run: a
``transformers`` text-classification pipeline in PyTorch and Detoxify's ``original``
BERT-base, both on every item, with a plain threshold on the toxicity score instead of
fairgate's monitors. Benchmark-only: not part of the fairgate distribution.

``USUAL_STACK_WORKDIR`` is where the random Detoxify checkpoint is written (a temp dir
when unset); ``USUAL_STACK_MAX_BATCH_SIZE`` (default 32) caps adaptive batches.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import bentoml

from fairgate.service._io import single_item_input, single_result_output
from fairgate.service.schemas import ClassifyRequest, ClassifyResult, classify_batch_request_type

MAX_BATCH_SIZE = int(os.environ.get("USUAL_STACK_MAX_BATCH_SIZE", "32"))
FLAG_AT = 0.5
BLOCK_AT = 0.9


@bentoml.service(workers=1, traffic={"timeout": 120}, labels={"project": "fairgate-benchmark"})
class UsualStack:
    """transformers pipeline (classifier) + Detoxify original (toxicity), PyTorch on CPU."""

    def __init__(self) -> None:
        from loadtests.usual_stack._models import load_models

        workdir = Path(os.environ.get("USUAL_STACK_WORKDIR") or tempfile.mkdtemp(prefix="usual-stack-"))
        self.classifier, self.detoxify = load_models(workdir)

    def _decide(self, items: list[Any]) -> list[ClassifyResult]:
        texts = [item.text for item in items]
        # Detoxify squeezes a batch of one to plain floats; keep every column a list.
        toxicity = {
            name: v if isinstance(v, list) else [v] for name, v in self.detoxify.predict(texts).items()
        }
        predictions = self.classifier(texts, batch_size=len(texts), truncation=True, top_k=None)
        results = []
        for index, (item, scores) in enumerate(zip(items, predictions, strict=True)):
            tox = {name: float(values[index]) for name, values in toxicity.items()}
            worst = tox["toxicity"]
            action = "block" if worst >= BLOCK_AT else "flag" if worst >= FLAG_AT else "allow"
            by_label = {entry["label"]: float(entry["score"]) for entry in scores}
            label = max(by_label, key=by_label.__getitem__)
            results.append(
                ClassifyResult(
                    request_id=uuid.uuid4().hex,
                    label=None if action == "block" else label,
                    scores={} if action == "block" else by_label,
                    action=action,
                    reasons=[],
                    toxicity=tox,
                    groups=[item.group] if item.group else [],
                )
            )
        return results

    @bentoml.api(
        route="/classify",
        batchable=True,
        max_batch_size=MAX_BATCH_SIZE,
        max_latency_ms=60_000,
        input_spec=single_item_input(ClassifyRequest),
        output_spec=single_result_output(),
    )
    def classify(self, items: list[ClassifyRequest]) -> list[ClassifyResult]:
        """One text; concurrent calls are batched (BentoML adaptive batching)."""
        return self._decide(items)

    @bentoml.api(
        route="/classify_batch",
        batchable=True,
        max_batch_size=MAX_BATCH_SIZE,
        max_latency_ms=60_000,
        input_spec=classify_batch_request_type(ClassifyRequest, 256),
    )
    def classify_batch(self, items: list[ClassifyRequest]) -> list[ClassifyResult]:
        """Several texts in one request."""
        return self._decide(items)
