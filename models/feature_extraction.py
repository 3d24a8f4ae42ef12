"""Feature extraction: a frozen encoder and a linear head fitted by logistic regression.

The other transfer strategy beside fine-tuning (``fairgate build classifier --strategy
feature-extraction``). Nothing of the pretrained encoder moves: the pooled embedding the
sequence-classification head reads (for BERT-style models the pooler's output, the same
vector the domain monitor scores) is computed once per text, a logistic regression is
fitted on it on the CPU (its regularisation chosen by cross-validation), and
its weights are folded into the model's own linear classifier layer. The result is an
ordinary Hugging Face sequence classifier, so the export, parity check, int8 quantisation
and store are the fine-tuned model's, and serving needs no torch.

The head reads the pooled embedding, not a mean over tokens: that is what the exported
graph computes. (Mean-pooled MiniLM embeddings score a few points higher with a logistic
regression, measured in docs/models.md, but would need a graph of our own.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fairgate.models.datasets import LabelledData
from fairgate.models.finetune import FinetuneResult

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "LinearHead",
    "fit_linear_head",
    "head_layer",
    "pooled_features",
    "train_linear_head",
    "write_linear_head",
]

logger = logging.getLogger(__name__)

# Inverse regularisation strengths tried by cross-validation (sklearn's C).
DEFAULT_CS: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)


def head_layer(model: PreTrainedModel) -> torch.nn.Linear:
    """The linear layer that produces the logits (BERT/DistilBERT ``classifier``, RoBERTa ``out_proj``)."""
    import torch

    head = getattr(model, "classifier", None)
    if isinstance(head, torch.nn.Linear):
        return head
    out_proj = getattr(head, "out_proj", None)
    if isinstance(out_proj, torch.nn.Linear):
        return out_proj
    raise ValueError(
        f"feature extraction needs a linear classification head; {type(model).__name__} has "
        f"{type(head).__name__}"
    )


def pooled_features(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int = 64,
    pooling: str = "head",
) -> np.ndarray:
    """``float32 [n, dim]``, in eval mode, length-sorted.

    ``pooling="head"``: the input of the head's linear layer (what the exported graph
    computes); ``"mean"``: the attention-masked mean of the encoder's last hidden states
    (sentence-transformers' pooling; measured in the learning curves, not exported).
    """
    import torch

    layer = head_layer(model)
    if pooling not in ("head", "mean"):
        raise ValueError(f"pooling {pooling!r} is not head or mean")
    dim = layer.in_features if pooling == "head" else int(model.config.hidden_size)
    if not texts:
        return np.zeros((0, dim), dtype=np.float32)
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach()))
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    out = np.zeros((len(texts), dim), dtype=np.float32)
    pad_id = tokenizer.pad_token_id or 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                width = max(len(encoded["input_ids"][i]) for i in idx)
                batch = {
                    key: torch.tensor(
                        [encoded[key][i] + [pad_id if key == "input_ids" else 0] * (width - len(encoded[key][i]))
                         for i in idx],
                        dtype=torch.long,
                    )
                    for key in keys
                }
                if pooling == "mean":
                    hidden = model.base_model(**batch).last_hidden_state
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    out[idx] = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)).float().numpy()
                    continue
                captured.clear()
                model(**batch)
                out[idx] = captured[-1].float().numpy()
    finally:
        hook.remove()
        model.train(was_training)
    return out


@dataclass(frozen=True, kw_only=True)
class LinearHead:
    """Logits ``features @ weight.T + bias`` (``weight [n_labels, hidden]``), standardisation folded in."""

    weight: np.ndarray
    bias: np.ndarray
    c: float
    cv_folds: int

    def logits(self, features: Any) -> np.ndarray:
        """``features`` ``[n, dim]``, a numpy array or a scipy sparse matrix."""
        return np.asarray(features @ self.weight.T + self.bias, dtype=np.float32)


def fit_linear_head(
    features: Any,
    targets: np.ndarray,
    *,
    n_labels: int,
    seed: int = 0,
    cs: Sequence[float] = DEFAULT_CS,
    class_weight: str | None = "balanced",
    standardize: bool = False,
) -> LinearHead:
    """Fit a logistic regression (C by stratified CV when every class has 3+ rows, else 1.0).

    On the raw features by default: the L2 penalty then bounds the weights in the space the
    exported graph computes in. Standardising (folded into the weights afterwards) lets
    near-constant dimensions earn huge weights whose bias cancels them, which int8
    quantisation of the encoder turns into noise (seen on a tiny random encoder: int8
    label agreement 0.31 against 1.0 without it).

    Binary heads become the symmetric pair ``[-z/2, z/2]``, whose softmax is the
    regression's sigmoid; several classes use the multinomial regression's own weights.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    targets = np.asarray(targets, dtype=np.int64)
    mean, scale = np.zeros(features.shape[1]), np.ones(features.shape[1])
    x = features  # may be a scipy sparse matrix (TF-IDF) when not standardising
    if standardize:
        mean, scale = features.mean(axis=0), features.std(axis=0)
        scale[scale < 1e-8] = 1.0
        x = (features - mean) / scale
    counts = np.bincount(targets, minlength=n_labels)
    present = counts[counts > 0]
    if len(present) < 2:
        raise ValueError("a linear head needs at least two classes in the training data")
    folds = int(min(3, present.min()))
    best_c = 1.0
    if folds >= 2 and len(cs) > 1:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        scores = [
            cross_val_score(
                LogisticRegression(C=c, max_iter=2000, class_weight=class_weight),
                x, targets, cv=splitter, scoring="f1_macro",
            ).mean()
            for c in cs
        ]
        best_c = float(cs[int(np.argmax(scores))])
    else:
        folds = 0
    regression = LogisticRegression(C=best_c, max_iter=2000, class_weight=class_weight).fit(x, targets)
    coef = regression.coef_ / scale  # [k, d] on the raw features
    intercept = regression.intercept_ - (regression.coef_ * (mean / scale)).sum(axis=1)
    weight = np.zeros((n_labels, features.shape[1]), dtype=np.float64)
    bias = np.zeros(n_labels, dtype=np.float64)
    classes = regression.classes_.astype(np.int64)
    if len(classes) == 2:
        weight[classes[0]], bias[classes[0]] = -coef[0] / 2, -intercept[0] / 2
        weight[classes[1]], bias[classes[1]] = coef[0] / 2, intercept[0] / 2
    else:
        weight[classes], bias[classes] = coef, intercept
        absent = np.setdiff1d(np.arange(n_labels), classes)
        bias[absent] = -1e4  # a class never seen is never predicted
    return LinearHead(weight=weight.astype(np.float32), bias=bias.astype(np.float32), c=best_c, cv_folds=folds)


def write_linear_head(model: PreTrainedModel, head: LinearHead) -> None:
    """Copy ``head`` into the model's linear classifier layer (in place)."""
    import torch

    layer = head_layer(model)
    if tuple(layer.weight.shape) != head.weight.shape:
        raise ValueError(f"head shape {head.weight.shape} does not fit the layer's {tuple(layer.weight.shape)}")
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(head.weight))
        if layer.bias is not None:
            layer.bias.copy_(torch.from_numpy(head.bias))


def train_linear_head(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    train: LabelledData,
    max_length: int,
    seed: int = 0,
    batch_size: int = 64,
) -> tuple[FinetuneResult, dict[str, Any]]:
    """Freeze the whole encoder, fit the linear head on its pooled embeddings, write it into ``model``.

    Returns a :class:`FinetuneResult` (no steps: nothing is trained by gradient) and the
    head's record for the metadata (C, folds, seconds for features and fit).
    """
    if train.task != "single_label_classification":
        raise ValueError("feature extraction is implemented for single-label classification")
    started = time.perf_counter()
    layer = head_layer(model)
    head_ids = {id(p) for p in layer.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in head_ids)
    features = pooled_features(model, tokenizer, train.texts, max_length=max_length, batch_size=batch_size)
    featured = time.perf_counter()
    head = fit_linear_head(features, train.targets, n_labels=len(train.labels), seed=seed)
    write_linear_head(model, head)
    model.eval()
    seconds = time.perf_counter() - started
    logger.info(
        "feature extraction: %d pooled embeddings (%d dims) in %.1fs; logistic regression C=%g (%d-fold CV)",
        len(features), features.shape[1], featured - started, head.c, head.cv_folds,
    )
    trainable = sum(p.numel() for p in layer.parameters())
    result = FinetuneResult(
        model=model,
        seconds=seconds,
        trainable_parameters=trainable,
        frozen_parameters=sum(p.numel() for p in model.parameters()) - trainable,
    )
    record = {
        "head": "logistic regression on the pooled embedding (C by cross-validation), written into the linear layer",
        "c": head.c,
        "cv_folds": head.cv_folds,
        "feature_seconds": round(featured - started, 2),
        "fit_seconds": round(seconds - (featured - started), 2),
        "n_features": int(features.shape[1]),
    }
    return result, record
