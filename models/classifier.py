"""``fairgate build classifier``: data -> fine-tune, then the shared tail (``fairgate.models.pipeline``).

This module knows the classifier's data, training and figures: the test split scored by
the int8 model (fp32 ONNX and PyTorch beside it), the per-group report and the deploy
gate. Export, parity, the card and the store are the pipeline's, the same as the guard's,
so the gate runs before anything reaches the store and a failing model is never stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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
from fairgate.models.domain_stats import DomainData
from fairgate.models.errors import DataError
from fairgate.models.finetune import FinetuneConfig
from fairgate.models.pipeline import ScoringModel, Task, TrainedModel

if TYPE_CHECKING:
    from fairgate.guardrails.onnx_model import Variant

__all__ = [
    "CLASSIFIER_FINETUNE",
    "DEFAULT_CLASSIFIER_NAME",
    "BuildResult",
    "ClassifierBuildConfig",
    "build_classifier",
    "evaluate_model_directory",
    "evaluate_scoring_model",
    "load_identity_data",
]

logger = logging.getLogger(__name__)

DEFAULT_CLASSIFIER_NAME = "fairgate-classifier"

# Classifier builds try static int8 with every MatMul in int8 first (the FFN
# down-projections too), then the build's fallback tiers (down-projections in fp32, ...).
# Measured on the default build, the same training run quantised both ways (docs/models.md,
# "Int8 speed"): 4.72 -> 3.27 CPU ms per text (serving runtime, one thread, SST-2 dev in
# batches of 32, 6 alternating rounds); validation agreement 1.0 both; test accuracy 0.915
# both (fp32 0.929); SST-2 dev 0.766 -> 0.767 (fp32 0.765), agreement with fp32 0.983 ->
# 0.975; identity sentences: agreement 0.995 both, per-group negative-rate spread 0.045 both
# (fp32 0.023). The guard keeps its down-projections in fp32: all-int8 moved its identity
# figures away from fp32 (fairgate.models.static_int8).
CLASSIFIER_KEEP_FP32: tuple[str, ...] = ()

# The classifier's own fine-tuning recipe: ``build classifier``'s defaults (the CLI reads
# them from here). Chosen once by the search recorded in docs/models.md ("The classifier's
# default recipe": SST-2, 5,000 sentences, chosen on validation accuracy, reported on dev).
# Only the classifier uses it: FinetuneConfig's own defaults, which the guard's build
# relies on, are unchanged (tests/unit/models/test_finetune_selection.py).
CLASSIFIER_FINETUNE = FinetuneConfig(
    epochs=4,
    learning_rate=1e-4,
    selection_metric="accuracy",
)


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
    finetune: FinetuneConfig = CLASSIFIER_FINETUNE
    positive_label: str | None = None
    min_group_size: int = Field(5, ge=1)
    max_parity_difference: float | None = Field(None, ge=0, le=1)
    min_impact_ratio: float | None = Field(None, ge=0, le=1)
    parity_tolerance: float = Field(1e-3, gt=0)
    int8_min_agreement: float = Field(0.99, ge=0, le=1)
    parity_samples: int = Field(512, ge=1)
    quantization: Literal["auto", "avx512_vnni", "avx512", "avx2", "arm64"] = "auto"
    # int8 mode: auto = static (calibrated on the training texts) when it passes parity, else dynamic.
    quantization_mode: Literal["auto", "static", "dynamic"] = "auto"
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    # The input normalisation trained with and recorded in the manifest (serving applies it).
    # The guard's default too, so the service can share one tokenizer call between them.
    normalization: Literal["social", "none"] = "social"
    output_dir: Path | None = None
    torch_threads: int | None = Field(None, ge=1)
    # finetune: train encoder and head; feature-extraction: frozen encoder + logistic-regression head.
    strategy: Literal["finetune", "feature-extraction"] = "finetune"
    # Learning curves measured on this build's data and test split ({"sizes": [...], "seeds": n}); None: none.
    learning_curve: dict[str, Any] | None = None
    curve_dir: Path | None = None


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
    learning_curve: dict[str, Any] | None = None


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
    variant: Variant = "int8",
    positive_label: str | None = None,
    min_group_size: int = 5,
    batch_size: int = 64,
) -> tuple[dict[str, Any], np.ndarray]:
    """Evaluate a single-label model directory with the serving runtime.

    Returns the report (``accuracy``, ``macro_f1``, ``roc_auc``, ``n`` and, when the data
    has groups, ``per_group``) and the probabilities ``[n, n_labels]``.
    """
    from fairgate.guardrails.onnx_model import OnnxTextModel

    model = OnnxTextModel.from_directory(model_dir, variant=variant)
    return evaluate_scoring_model(
        model, data, positive_label=positive_label, min_group_size=min_group_size, batch_size=batch_size
    )


def evaluate_scoring_model(
    model: ScoringModel,
    data: LabelledData,
    *,
    positive_label: str | None = None,
    min_group_size: int = 5,
    batch_size: int = 64,
) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`evaluate_model_directory` for a model already loaded (the build's int8 model)."""
    from fairgate.models.evaluation import classification_metrics, group_metrics

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


def _identity_set(config: ClassifierBuildConfig, labels: list[str]) -> LabelledData | None:
    """The identity set for the per-group report, unless the data has its own groups."""
    if not config.identity_data or config.group_column is not None:
        return None
    try:
        return load_identity_data(config.identity_data, labels=labels)
    except DataError as error:
        if config.identity_data != "bundled":
            raise
        # The bundled identity set is sentiment (negative/positive); other label sets
        # get no identity report rather than a failed build.
        logger.warning("no per-group report: the bundled identity set does not fit labels %s (%s)",
                       labels, error)
        return None


@dataclass(frozen=True, kw_only=True)
class _ClassifierAssessment:
    """The test split scored by the int8 model (fp32 ONNX and PyTorch beside it), the
    per-group report (the data's groups, else the identity set's) and the deploy gate."""

    config: ClassifierBuildConfig
    test: LabelledData
    identity: LabelledData | None
    trained: TrainedModel

    def __call__(self, *, int8: ScoringModel, model_dir: Path) -> dict[str, Any]:
        from fairgate.models.evaluation import classification_metrics, probabilities
        from fairgate.models.finetune import predict_logits

        config, trained = self.config, self.trained
        metrics, _ = evaluate_scoring_model(
            int8, self.test, positive_label=config.positive_label, min_group_size=config.min_group_size
        )
        fp32_metrics, _ = evaluate_model_directory(model_dir, self.test, variant="fp32")
        torch_logits = predict_logits(
            trained.model, trained.tokenizer, self.test.texts, max_length=trained.max_length
        )
        torch_metrics = classification_metrics(
            targets=self.test.targets, probs=probabilities(torch_logits, trained.task), labels=trained.labels
        )
        per_group = metrics.pop("per_group", None)
        if self.identity is not None:
            identity_report, _ = evaluate_scoring_model(
                int8, self.identity, positive_label=config.positive_label, min_group_size=config.min_group_size
            )
            per_group = identity_report["per_group"]
            per_group["accuracy"] = identity_report["accuracy"]
        headline = ("accuracy", "macro_f1", "roc_auc")
        return {
            "metrics": {
                **metrics,
                "variant": "int8",
                "fp32_onnx": {k: fp32_metrics[k] for k in headline},
                "pytorch": {k: torch_metrics[k] for k in headline},
                "per_group": per_group,
            },
            "gate": {
                "max_parity_difference": config.max_parity_difference,
                "min_impact_ratio": config.min_impact_ratio,
                "passed": _deploy_gate(per_group, config),
            },
        }


def _deploy_gate(per_group: dict[str, Any] | None, config: ClassifierBuildConfig) -> list[str]:
    """The checks passed; raises ``DeployGateError`` (nothing stored) when one fails."""
    from fairgate.models.evaluation import check_deploy_gate

    if config.max_parity_difference is None and config.min_impact_ratio is None:
        return []
    if per_group is None:
        raise DataError(
            "a deploy gate (--max-parity-difference / --min-impact-ratio) needs groups: "
            "give --group-column or keep --identity-data"
        )
    return check_deploy_gate(
        per_group,
        max_parity_difference=config.max_parity_difference,
        min_impact_ratio=config.min_impact_ratio,
    )


def build_classifier(config: ClassifierBuildConfig, *, progress: bool = True) -> BuildResult:
    """Run the whole build; raises ``DataError``, ``EncoderSourceError``,
    ``ExportParityError`` or ``DeployGateError`` (nothing stored) on failure."""
    import torch

    from fairgate.models.card import CLASSIFIER_CARD
    from fairgate.models.encoder import load_sequence_classifier, load_tokenizer, resolve_encoder
    from fairgate.models.finetune import finetune, seed_everything
    from fairgate.models.learning_curve import learning_curve_section
    from fairgate.models.pipeline import StoreTarget, export_and_store, limit_torch_threads
    from fairgate.models.static_int8 import StaticQuantization

    started = time.perf_counter()
    limit_torch_threads(config.torch_threads or _auto_threads())
    data, splits = _load_splits(config)
    raw_splits = splits  # the domain statistics read raw texts through the exported model, as serving does
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
    task: Task = "single_label_classification"
    logger.info(
        "data %s: train %d, validation %d, test %d; labels %s",
        splits.train.source, len(splits.train), len(splits.validation), len(splits.test), labels,
    )
    identity = _identity_set(config, labels)

    encoder = resolve_encoder(config.base)
    tokenizer = load_tokenizer(encoder)
    seed_everything(config.finetune.seed)  # the new head's initial weights
    model = load_sequence_classifier(encoder, labels=labels, task=task)
    strategy_record: dict[str, Any] = {}
    if config.strategy == "feature-extraction":
        from fairgate.models.feature_extraction import train_linear_head

        trained, strategy_record = train_linear_head(
            model, tokenizer, train=splits.train, max_length=config.finetune.max_length, seed=config.finetune.seed
        )
    else:
        trained = finetune(
            model, tokenizer, train=splits.train, validation=splits.validation,
            config=config.finetune, progress=progress,
        )
    curve = None
    if config.learning_curve is not None:
        from fairgate.models.learning_curve import build_learning_curve

        curve = build_learning_curve(config, encoder=encoder, pool=splits.train, test=splits.test,
                                     normalization=normalization)
    exported = TrainedModel(
        model=model, tokenizer=tokenizer, task=task, labels=labels,
        max_length=config.finetune.max_length, normalization=normalization,
        parity_texts=splits.validation.texts[: config.parity_samples],
        calibration_texts=splits.train.texts,
        domain=DomainData(
            train_texts=raw_splits.train.texts,
            train_targets=[int(t) for t in raw_splits.train.targets],
            validation_texts=raw_splits.validation.texts,
            seed=config.finetune.seed,
        ),
    )
    metadata = {
        "role": "classifier",
        "task": task,
        "labels": labels,
        "base": encoder.describe(),
        "base_source": config.base,
        "data": {
            "source": splits.train.source,
            "fingerprint": data.fingerprint,
            "test_source": splits.test.source,
            "test_fingerprint": splits.test.fingerprint,
            "sizes": {"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)},
            "split_seed": splits.seed,
            "identity_source": identity.source if identity is not None else None,
            "identity_fingerprint": identity.fingerprint if identity is not None else None,
        },
        "training": {
            "strategy": config.strategy,
            **({"feature_extraction": strategy_record} if strategy_record else {}),
            "config": config.finetune.model_dump(),
            "seconds": round(trained.seconds, 2),
            "steps": trained.steps,
            "best_step": trained.best_step,
            "best_validation_loss": trained.best_validation_loss,
            "selection_metric": trained.selection_metric,
            "best_validation_score": trained.best_validation_score,
            "stopped_early": trained.stopped_early,
            "trainable_parameters": trained.trainable_parameters,
            "frozen_parameters": trained.frozen_parameters,
            "history": trained.history,
            "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "build_config": config.model_dump(mode="json", exclude={"finetune"}),
    }
    if curve is not None:
        metadata["learning_curve"] = curve.result
    stored = export_and_store(
        exported,
        target=StoreTarget(
            name=config.name,
            store_labels={"role": "classifier"},
            parity_tolerance=config.parity_tolerance,
            int8_min_agreement=config.int8_min_agreement,
            quantization=config.quantization,
            quantization_mode=config.quantization_mode,
            static=replace(
                StaticQuantization.for_method(config.calibration_method), keep_fp32_suffixes=CLASSIFIER_KEEP_FP32
            ),
            copy_to=config.output_dir,
            extra_files=curve.files if curve is not None else {},
        ),
        metadata=metadata,
        assess=_ClassifierAssessment(config=config, test=splits.test, identity=identity, trained=exported),
        card=(*CLASSIFIER_CARD, *((learning_curve_section,) if curve is not None else ())),
        started=started,
    )
    figures = stored.metadata
    return BuildResult(
        tag=stored.tag, metrics=figures["metrics"], per_group=figures["metrics"]["per_group"],
        parity=figures["parity"], export=figures["export"], training=figures["training"],
        seconds=time.perf_counter() - started, gate=figures["gate"]["passed"],
        learning_curve=figures.get("learning_curve"),
    )
