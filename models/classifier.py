"""``fairgate build classifier``: data -> fine-tune -> export -> parity -> evaluate -> gate -> store.

The order matters: the model is evaluated as it will be served (the int8 ONNX graph,
through the serving runtime ``fairgate.guardrails.onnx_model``), and both the parity check and
the deploy gate run before anything reaches the store, so a failing model is never
stored.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fairgate.guardrails.normalize import TextNormalization
from fairgate.models.datasets import (
    BUNDLED_IDENTITY,
    DataSplits,
    LabelledData,
    bundled_data_path,
    load_labelled_data,
    split_data,
)
from fairgate.models.errors import DataError
from fairgate.models.finetune import FinetuneConfig

__all__ = [
    "DEFAULT_CLASSIFIER_NAME",
    "BuildResult",
    "ClassifierBuildConfig",
    "build_classifier",
    "evaluate_model_directory",
    "load_identity_data",
]

logger = logging.getLogger(__name__)

DEFAULT_CLASSIFIER_NAME = "fairgate-classifier"


class ClassifierBuildConfig(BaseModel):
    """Everything ``build classifier`` needs; recorded in the store metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = DEFAULT_CLASSIFIER_NAME
    base: str = "bundled"
    data: str = "bundled"
    text_column: str = "text"
    label_column: str = "label"
    group_column: str | None = None
    labels: list[str] | None = None
    hub_split: str = "train"
    test_data: str | None = None
    identity_data: str | None = "bundled"
    max_samples: int | None = Field(None, ge=10)
    validation_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, ge=0, lt=0.5)
    finetune: FinetuneConfig = FinetuneConfig()
    positive_label: str | None = None
    min_group_size: int = Field(5, ge=1)
    max_parity_difference: float | None = Field(None, ge=0, le=1)
    min_impact_ratio: float | None = Field(None, ge=0, le=1)
    parity_tolerance: float = Field(1e-3, gt=0)
    int8_min_agreement: float = Field(0.99, ge=0, le=1)
    parity_samples: int = Field(512, ge=1)
    quantization: Literal["auto", "avx512_vnni", "avx512", "avx2", "arm64"] = "auto"
    # The input normalisation trained with and recorded in the manifest (serving applies it).
    # The guard's default too, so the service can share one tokenizer call between them.
    normalization: Literal["social", "none"] = "social"
    output_dir: Path | None = None
    torch_threads: int | None = Field(None, ge=1)


@dataclass(kw_only=True)
class BuildResult:
    """What the build produced: the store tag and the figures behind it."""

    tag: str
    metrics: dict[str, Any]
    per_group: dict[str, Any] | None
    parity: dict[str, Any]
    export: dict[str, Any]
    training: dict[str, Any]
    seconds: float
    gate: list[str] = field(default_factory=list)


def load_identity_data(source: str, *, labels: list[str]) -> LabelledData:
    """The identity set: same sentences, different groups; ``sentiment`` is the label."""
    path = bundled_data_path(BUNDLED_IDENTITY) if source == "bundled" else Path(source)
    return load_labelled_data(
        path,
        text_column="text",
        label_column="sentiment",
        group_column="group",
        labels=labels,
    )


def _load_splits(config: ClassifierBuildConfig) -> tuple[LabelledData, DataSplits]:
    data = load_labelled_data(
        config.data,
        text_column=config.text_column,
        label_column=config.label_column,
        group_column=config.group_column,
        labels=config.labels,
        max_samples=config.max_samples,
        seed=config.finetune.seed,
        hub_split=config.hub_split,
    )
    if config.test_data is None:
        return data, split_data(
            data,
            seed=config.finetune.seed,
            validation_fraction=config.validation_fraction,
            test_fraction=config.test_fraction,
        )
    test = load_labelled_data(
        config.test_data,
        text_column=config.text_column,
        label_column=config.label_column,
        group_column=config.group_column,
        labels=list(data.labels),
    )
    parts = split_data(
        data, seed=config.finetune.seed, validation_fraction=config.validation_fraction, test_fraction=0
    )
    return data, DataSplits(train=parts.train, validation=parts.validation, test=test, seed=parts.seed)


def evaluate_model_directory(
    model_dir: Path,
    data: LabelledData,
    *,
    variant: str = "int8",
    positive_label: str | None = None,
    min_group_size: int = 5,
    batch_size: int = 64,
) -> tuple[dict[str, Any], np.ndarray]:
    """Evaluate a single-label model directory with the serving runtime.

    Returns the report (``accuracy``, ``macro_f1``, ``roc_auc``, ``n`` and, when the data
    has groups, ``per_group``) and the probabilities ``[n, n_labels]``.
    """
    from fairgate.guardrails.onnx_model import OnnxTextModel
    from fairgate.models.evaluation import classification_metrics, group_metrics

    model = OnnxTextModel.from_directory(model_dir, variant=variant)
    if list(model.labels) != list(data.labels):
        raise DataError(
            f"{data.source}: labels {list(data.labels)} do not match the model's {list(model.labels)}"
        )
    probs = np.concatenate(
        [model.predict_proba(data.texts[i : i + batch_size]) for i in range(0, len(data), batch_size)]
    ) if len(data) else np.zeros((0, len(data.labels)), dtype=np.float32)
    report: dict[str, Any] = classification_metrics(targets=data.targets, probs=probs, labels=data.labels)
    if data.groups is not None:
        report["per_group"] = group_metrics(
            targets=data.targets,
            predictions=probs.argmax(axis=1),
            groups=data.groups,
            labels=data.labels,
            positive_label=positive_label,
            min_group_size=min_group_size,
            source=data.source,
        )
    return report, probs


def _auto_threads() -> int | None:
    """One torch thread when the machine is already busy, else torch's default.

    Measured on the shared 2-core build machine at load ~10: MiniLM training steps took
    about 2 s with one intra-op thread and about 12 s with two, which spin-wait on each
    other whenever one is descheduled. On an idle machine two threads are faster.
    """
    import os

    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cpus = os.cpu_count() or 1
    if load >= cpus:
        logger.info("load average %.1f >= %d CPUs: training with 1 torch thread", load, cpus)
        return 1
    return None


def build_classifier(config: ClassifierBuildConfig, *, progress: bool = True) -> BuildResult:
    """Run the whole build; raises ``DataError``, ``EncoderSourceError``,
    ``ExportParityError`` or ``DeployGateError`` (nothing stored) on failure."""
    import torch

    from fairgate.models.card import render_model_card
    from fairgate.models.encoder import load_sequence_classifier, load_tokenizer, resolve_encoder
    from fairgate.models.evaluation import check_deploy_gate, classification_metrics, probabilities
    from fairgate.models.export import check_parity, export_model_directory
    from fairgate.models.finetune import finetune, predict_logits, seed_everything
    from fairgate.models.store import json_safe, save_model_directory

    started = time.perf_counter()
    threads = config.torch_threads or _auto_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    data, splits = _load_splits(config)
    normalization = (
        TextNormalization.social() if config.normalization == "social" else TextNormalization.none()
    )
    # Training and parity texts are normalised here; evaluation goes through the exported
    # model, which applies its manifest's normalisation itself.
    splits = DataSplits(
        train=replace(splits.train, texts=normalization.apply(splits.train.texts)),
        validation=replace(splits.validation, texts=normalization.apply(splits.validation.texts)),
        test=splits.test,
        seed=splits.seed,
    )
    labels = list(splits.train.labels)
    task = "single_label_classification"
    logger.info(
        "data %s: train %d, validation %d, test %d; labels %s",
        splits.train.source, len(splits.train), len(splits.validation), len(splits.test), labels,
    )
    identity = None
    if config.identity_data and config.group_column is None:
        try:
            identity = load_identity_data(config.identity_data, labels=labels)
        except DataError as error:
            if config.identity_data != "bundled":
                raise
            # The bundled identity set is sentiment (negative/positive); other label sets
            # get no identity report rather than a failed build.
            logger.warning("no per-group report: the bundled identity set does not fit labels %s (%s)",
                           labels, error)

    encoder = resolve_encoder(config.base)
    tokenizer = load_tokenizer(encoder)
    seed_everything(config.finetune.seed)  # the new head's initial weights
    model = load_sequence_classifier(encoder, labels=labels, task=task)
    trained = finetune(
        model, tokenizer, train=splits.train, validation=splits.validation,
        config=config.finetune, progress=progress,
    )
    max_length = config.finetune.max_length

    with tempfile.TemporaryDirectory(prefix="fairgate-classifier-") as scratch:
        model_dir = Path(scratch) / "model"
        export = export_model_directory(
            model, tokenizer, model_dir, task=task, labels=labels,
            max_length=max_length, quantization=config.quantization, normalization=normalization,
        )
        parity = check_parity(
            torch_model=model, tokenizer=tokenizer, model_dir=model_dir,
            texts=splits.validation.texts[: config.parity_samples], task=task,
            max_length=max_length, fp32_tolerance=config.parity_tolerance,
            int8_min_agreement=config.int8_min_agreement,
        )
        metrics, _ = evaluate_model_directory(
            model_dir, splits.test, variant="int8",
            positive_label=config.positive_label, min_group_size=config.min_group_size,
        )
        fp32_metrics, _ = evaluate_model_directory(model_dir, splits.test, variant="fp32")
        torch_probs = probabilities(
            predict_logits(model, tokenizer, splits.test.texts, max_length=max_length), task
        )
        torch_metrics = classification_metrics(targets=splits.test.targets, probs=torch_probs, labels=labels)
        per_group = metrics.pop("per_group", None)
        if identity is not None:
            identity_report, _ = evaluate_model_directory(
                model_dir, identity, variant="int8",
                positive_label=config.positive_label, min_group_size=config.min_group_size,
            )
            per_group = identity_report["per_group"]
            per_group["accuracy"] = identity_report["accuracy"]
        gate: list[str] = []
        if config.max_parity_difference is not None or config.min_impact_ratio is not None:
            if per_group is None:
                raise DataError(
                    "a deploy gate (--max-parity-difference / --min-impact-ratio) needs groups: "
                    "give --group-column or keep --identity-data"
                )
            gate = check_deploy_gate(
                per_group,
                max_parity_difference=config.max_parity_difference,
                min_impact_ratio=config.min_impact_ratio,
            )
        metrics["variant"] = "int8"
        all_metrics = {
            **metrics,
            "fp32_onnx": {k: fp32_metrics[k] for k in ("accuracy", "macro_f1", "roc_auc")},
            "pytorch": {k: torch_metrics[k] for k in ("accuracy", "macro_f1", "roc_auc")},
            "per_group": per_group,
        }
        training = {
            "config": config.finetune.model_dump(),
            "seconds": round(trained.seconds, 2),
            "steps": trained.steps,
            "best_step": trained.best_step,
            "best_validation_loss": trained.best_validation_loss,
            "stopped_early": trained.stopped_early,
            "trainable_parameters": trained.trainable_parameters,
            "frozen_parameters": trained.frozen_parameters,
            "history": trained.history,
            "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        }
        data_meta = {
            "source": splits.train.source,
            "fingerprint": data.fingerprint,
            "test_source": splits.test.source,
            "test_fingerprint": splits.test.fingerprint,
            "sizes": {"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)},
            "split_seed": splits.seed,
            "identity_source": identity.source if identity is not None else None,
            "identity_fingerprint": identity.fingerprint if identity is not None else None,
        }
        card = render_model_card(
            name=config.name, task=task, labels=labels, base=encoder.describe(), data=data_meta,
            training={k: v for k, v in training.items() if k != "history"},
            metrics=json_safe(all_metrics), parity=parity.as_dict(), export=export,
        )
        (model_dir / "MODEL_CARD.md").write_text(card, encoding="utf-8")
        metadata = {
            "role": "classifier",
            "task": task,
            "labels": labels,
            "base": encoder.describe(),
            "base_source": config.base,
            "data": data_meta,
            "training": training,
            "metrics": all_metrics,
            "parity": parity.as_dict(),
            "export": export,
            "gate": {
                "max_parity_difference": config.max_parity_difference,
                "min_impact_ratio": config.min_impact_ratio,
                "passed": gate,
            },
            "build_config": config.model_dump(mode="json", exclude={"finetune"}),
        }
        tag = save_model_directory(config.name, model_dir, metadata=metadata, labels={"role": "classifier"})
        if config.output_dir is not None:
            shutil.copytree(model_dir, config.output_dir, dirs_exist_ok=True)
    return BuildResult(
        tag=tag, metrics=all_metrics, per_group=per_group, parity=parity.as_dict(),
        export=export, training=training, seconds=time.perf_counter() - started, gate=gate,
    )

