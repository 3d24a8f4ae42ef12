"""The "usual stack" the benchmark compares fairgate against.

A BentoML service of the same shape as fairgate (``/classify``, ``/classify_batch``),
written the way most BentoML + Hugging Face services are: a ``transformers`` pipeline in
PyTorch for the classifier (the same MiniLM encoder with a 2-label head) and Detoxify's
``original`` model (BERT-base, 6 labels) for toxicity. Weights of the heads and of the
Detoxify BERT are random: the comparison is about serving cost, not accuracy, and no
weights may be downloaded here.
"""

from __future__ import annotations

from loadtests.usual_stack._models import DETOXIFY_ORIGINAL_CLASSES, build_detoxify_checkpoint, load_models

__all__ = ["DETOXIFY_ORIGINAL_CLASSES", "build_detoxify_checkpoint", "load_models"]
