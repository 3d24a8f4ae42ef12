"""Build ``fairgate-toxicity``: source -> six-output model -> ONNX with parity -> store.

Every source ends the same way: export with the pipeline's ``export_model_directory``,
``check_parity`` against the PyTorch model (fp32 max |logit diff|, int8 agreement of the
thresholded labels), evaluation of the *int8* ONNX model (what serving runs) on a
held-out split and on the identity set, a model card, and ``save_model_directory``.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fairgate.models.errors import FairnessGateError
from fairgate.models.guard._augment import Swapper, augment_training_data, normalise_dataset
from fairgate.models.guard._categories import CATEGORIES
from fairgate.models.guard._csv import GuardDataset, LabelRule, read_guard_csv
from fairgate.models.guard._errors import GuardDataError, SourceSpecError
from fairgate.models.guard._metadata import store_safe
from fairgate.models.guard._source import GuardSource, parse_source

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from fairgate.guardrails.normalize import TextNormalization
    from fairgate.models.guard.fairness import IdentityReport

logger = logging.getLogger(__name__)

GUARD_NAME = "fairgate-toxicity"
BUNDLED_TOXICITY = Path("toxicity") / "toxicity.csv"
# Benign text never trained on: the recommended thresholds are calibrated on it.
BUNDLED_CALIBRATION = Path("toxicity") / "calibration" / "benign_calibration.txt"
BUNDLED_IDENTITY_EVAL = Path("identity_eval") / "identity_eval.csv"


class GuardBuildConfig(BaseModel):
    """Everything ``fairgate build guard`` takes; recorded in the store metadata."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = "bundled"
    hf_config: Path | None = None
    name: str = GUARD_NAME
    base: str = "bundled"
    label_map: tuple[str, ...] = ()
    text_column: str | None = None
    soft_labels: bool = False
    epochs: int = Field(4, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    max_length: int = Field(128, ge=8, le=512)
    class_weights: str = Field("none", pattern="^(none|balanced)$")
    max_train_rows: int | None = Field(None, ge=10)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 0
    identity_data: Path | None = None
    parity_tolerance: float = Field(1e-3, gt=0)
    int8_min_agreement: float = Field(0.99, ge=0, le=1)
    parity_texts: int = Field(256, ge=1)
    test_split_out: Path | None = None
    threads: int | None = Field(None, ge=1)
    # Fair and robust by default (docs/guard.md): the input normalisation recorded in the
    # manifest ("auto": social-media rules for guards trained here, none for converted
    # checkpoints, which were trained on raw text), identity-swapped copies per training
    # text that names a group, noisy copies, and counterfactual logit pairing.
    normalization: Literal["auto", "social", "none"] = "auto"
    counterfactual_variants: int = Field(1, ge=0)
    counterfactual_weight: float = Field(1.0, ge=0)
    noise_fraction: float = Field(0.25, ge=0, le=1)
    freeze_embeddings: bool = True
    # The fairness gate, on the identity evaluation set (kept apart from training by
    # template) at the recommended thresholds: nothing is stored when it fails.
    identity_eval_data: Path | None = None
    fairness_gate: bool = True
    fairness_max_flag_rate: float = Field(0.05, ge=0, le=1)
    fairness_max_spread: float = Field(0.10, ge=0, le=1)
    # Recommended thresholds, calibrated on benign text never trained on, with a stated
    # guarantee: P(false-block rate > max_false_block) <= 1 - calibration_confidence.
    calibration_data: Path | None = None
    max_false_block: float = Field(0.01, gt=0, lt=1)
    max_false_flag: float = Field(0.05, gt=0, lt=1)
    calibration_confidence: float = Field(0.95, gt=0, lt=1)


@dataclass(frozen=True, kw_only=True)
class GuardBuildResult:
    """The stored tag and the metadata stored with it."""

    tag: str
    metadata: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class _Splits:
    train: GuardDataset
    validation: GuardDataset
    test: GuardDataset


def split_guard_data(
    data: GuardDataset, *, seed: int, test_fraction: float, validation_fraction: float
) -> _Splits:
    """Seeded split stratified on ``toxicity >= 0.5``: test, validation, the rest to train.

    Fractions are of the whole file, so ``test_fraction=0.2`` is "train on 80%, score on
    20%" with validation carved out of the 80%.
    """
    rng = np.random.default_rng(seed)
    toxic = data.targets[:, 0] >= 0.5
    test, validation, train = [], [], []
    for members in (np.flatnonzero(toxic), np.flatnonzero(~toxic)):
        shuffled = rng.permutation(members)
        n_test = round(len(shuffled) * test_fraction)
        n_val = round(len(shuffled) * validation_fraction)
        test += shuffled[:n_test].tolist()
        validation += shuffled[n_test : n_test + n_val].tolist()
        train += shuffled[n_test + n_val :].tolist()
    if not train or not validation or not test:
        raise GuardDataError(
            f"{len(data)} rows are too few to split into train/validation/test "
            f"({test_fraction:g} test, {validation_fraction:g} validation); give more rows"
        )
    return _Splits(
        train=data.subset(sorted(train)),
        validation=data.subset(sorted(validation)),
        test=data.subset(sorted(test)),
    )


def write_split(data: GuardDataset, path: Path) -> Path:
    """Write a split as CSV (``text`` + its labelled categories) for ``fairgate evaluate``.

    Lets another model be scored on exactly the rows this build held out.
    """
    import pandas as pd

    known = data.known_categories
    frame = pd.DataFrame({"text": data.texts})
    for category in known:
        frame[category] = data.targets[:, CATEGORIES.index(category)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%g")
    logger.info("wrote the %d held-out rows to %s", len(frame), path)
    return path


def _labelled(data: GuardDataset, known: list[str], source: str):  # -> LabelledData
    from fairgate.models.datasets import LabelledData, fingerprint_records

    columns = [CATEGORIES.index(c) for c in known]
    targets = data.targets[:, columns].astype(np.float32)
    return LabelledData(
        texts=data.texts,
        targets=targets,
        labels=tuple(known),
        task="multi_label_classification",
        source=source,
        fingerprint=fingerprint_records(data.texts, targets),
    )


def _cap(data: GuardDataset, rows: int | None, seed: int) -> GuardDataset:
    if rows is None or len(data) <= rows:
        return data
    keep = np.sort(np.random.default_rng(seed).choice(len(data), size=rows, replace=False))
    return data.subset(keep.tolist())


def _train(
    splits: _Splits,
    config: GuardBuildConfig,
    source: str,
    progress: bool,
    families: np.ndarray | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any], str]:
    """Fine-tune the base encoder on the categories the data labels; rewire to six."""
    from fairgate.models.encoder import load_sequence_classifier, load_tokenizer, resolve_encoder
    from fairgate.models.finetune import FinetuneConfig, finetune, seed_everything
    from fairgate.models.guard._head import rewire_head

    known = splits.train.known_categories
    encoder = resolve_encoder(config.base)
    tokenizer = load_tokenizer(encoder)
    seed_everything(config.seed)  # before the head is initialised
    model = load_sequence_classifier(encoder, labels=known, task="multi_label_classification")
    finetune_config = FinetuneConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        max_length=config.max_length,
        class_weights=config.class_weights,  # type: ignore[arg-type]
        seed=config.seed,
        freeze_embeddings=config.freeze_embeddings,
        counterfactual_weight=config.counterfactual_weight if families is not None else 0.0,
    )
    result = finetune(
        model,
        tokenizer,
        train=_labelled(splits.train, known, source),
        validation=_labelled(splits.validation, known, source),
        config=finetune_config,
        progress=progress,
        counterfactual_groups=families,
    )
    rewire_head(model, [known.index(c) if c in known else None for c in CATEGORIES])
    model.eval()
    training = {
        "config": finetune_config.model_dump(),
        "categories_trained": known,
        "steps": result.steps,
        "best_step": result.best_step,
        "best_validation_loss": result.best_validation_loss,
        "stopped_early": result.stopped_early,
        "seconds": round(result.seconds, 1),
        "trainable_parameters": result.trainable_parameters,
        "history": result.history,
    }
    return model, tokenizer, training, encoder.describe()


def _bundled_toxicity() -> GuardDataset:
    from fairgate.models.datasets import bundled_data_path

    return read_guard_csv(bundled_data_path(BUNDLED_TOXICITY))


def _identity_path(config: GuardBuildConfig) -> Path | None:
    if config.identity_data is not None:
        return config.identity_data
    from fairgate.models.datasets import BUNDLED_IDENTITY, bundled_data_path
    from fairgate.models.errors import DataError

    try:
        return bundled_data_path(BUNDLED_IDENTITY)
    except DataError:
        return None


def measure_identity_fpr(onnx_model: Any, path: Path | None, *, variant: str) -> dict[str, Any]:
    """Per-group FPR of ``toxicity >= 0.5`` on the identity set's non-toxic sentences."""
    import pandas as pd

    from fairgate.models.guard.evaluation import (
        binary_labels,
        identity_false_positive_rates,
        score_texts,
    )

    if path is None or not Path(path).is_file():
        logger.warning("identity set not found (%s); per-identity FPR not measured", path)
        return {"status": f"identity set not found ({path})"}
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("text", "group"):
        if column not in frame.columns:
            raise GuardDataError(f"{path}: identity set needs a {column!r} column")
    if "toxic" in frame.columns:
        toxic = binary_labels(frame["toxic"].tolist(), column="toxic", source=str(path))
        frame = frame[~toxic]
    scores = score_texts(onnx_model, frame["text"].tolist())
    figures = identity_false_positive_rates(scores[:, 0], frame["group"].tolist())
    figures.update({"data": str(path), "variant": variant})
    return figures


def _normalization(config: GuardBuildConfig, *, trained: bool) -> TextNormalization:
    """The input normalisation the model is trained and served with (see the config)."""
    from fairgate.guardrails.normalize import TextNormalization

    wanted = config.normalization
    if wanted == "auto":
        wanted = "social" if trained else "none"
    return TextNormalization.social() if wanted == "social" else TextNormalization.none()


def _swapper() -> Swapper:
    from fairgate.guardrails.identity import CounterfactualSwapper, Lexicon

    return CounterfactualSwapper(lexicon=Lexicon.from_yaml())


# Categories whose scores act in the default policy: any of them at or above the block
# threshold blocks, any of all six at or above the flag threshold flags.
_BLOCKING = ("toxicity", "severe_toxicity", "threat", "identity_attack")
# A block needs the guard to call toxicity more likely than not, whatever the calibration
# sample says; raising a calibrated threshold only lowers the false-block rate.
_MIN_BLOCK = 0.5


def _recommended_thresholds(onnx_model: Any, config: GuardBuildConfig) -> dict[str, Any]:
    """Block and flag thresholds with a stated false-block (false-flag) guarantee.

    One threshold per action, shared by the categories that take it, calibrated on the
    *maximum* of their scores per benign text: "any category blocks" is then exactly
    "max >= threshold", so the guarantee covers the union with no Bonferroni split
    (which would need about 1,750 calibration texts at 1% and 95% over four categories).
    """
    from fairgate.guardrails.calibration import CalibrationError, calibrate_threshold
    from fairgate.models.guard.evaluation import score_texts

    path = config.calibration_data or _bundled_path(BUNDLED_CALIBRATION)
    if path is None or not Path(path).is_file():
        logger.warning("calibration set not found (%s); no recommended thresholds", path)
        return {"status": f"calibration set not found ({path})"}
    texts = _read_lines(Path(path))
    scores = score_texts(onnx_model, texts)
    blocking = [CATEGORIES.index(c) for c in _BLOCKING]
    try:
        block = calibrate_threshold(
            scores[:, blocking].max(axis=1),
            max_rate=config.max_false_block,
            confidence=config.calibration_confidence,
        )
        flag = calibrate_threshold(
            scores.max(axis=1), max_rate=config.max_false_flag, confidence=config.calibration_confidence
        )
    except CalibrationError as error:
        logger.warning("thresholds not calibrated: %s", error)
        return {"status": f"not calibrated: {error}"}
    block_at = round(max(block.threshold, _MIN_BLOCK) + 5e-4, 3)
    flag_at = round(min(flag.threshold + 5e-4, block_at), 3)
    categories: dict[str, dict[str, float]] = {c: {"flag": flag_at, "block": block_at} for c in _BLOCKING}
    categories.update({c: {"flag": flag_at} for c in CATEGORIES if c not in _BLOCKING})
    blocked = float(np.mean(scores[:, blocking].max(axis=1) >= block_at))
    flagged = float(np.mean(scores.max(axis=1) >= flag_at))
    return {
        "method": "order-statistic bound on the max score over the acting categories",
        "guarantee": (
            f"P(false-block rate > {config.max_false_block:g}) <= {1 - config.calibration_confidence:.2g} "
            f"and P(false-flag rate > {config.max_false_flag:g}) <= {1 - config.calibration_confidence:.2g}, "
            "for benign text like the calibration set"
        ),
        "data": str(path),
        "data_fingerprint": _fingerprint(texts),
        "n": len(texts),
        "confidence": config.calibration_confidence,
        "block": {**block.__dict__, "applied": block_at, "calibration_blocked": blocked},
        "flag": {**flag.__dict__, "applied": flag_at, "calibration_flagged": flagged},
        "categories": categories,
    }


def _identity_report(
    onnx_model: Any, config: GuardBuildConfig, *, flag: float, block: float
) -> IdentityReport | None:
    from fairgate.models.guard.fairness import measure_identity_report

    path = config.identity_eval_data or _bundled_path(BUNDLED_IDENTITY_EVAL)
    if path is None or not Path(path).is_file():
        logger.warning("identity evaluation set not found (%s); no identity report", path)
        return None
    return measure_identity_report(
        onnx_model, path, flag_threshold=flag, block_threshold=block, variant="int8"
    )


def _gate(report: IdentityReport | None, config: GuardBuildConfig) -> dict[str, Any]:
    """Raise ``FairnessGateError`` (nothing stored) unless the guard passes or the gate is off."""
    from fairgate.models.guard.fairness import check_fairness_gate

    limits = {
        "max_benign_flag_rate": config.fairness_max_flag_rate,
        "max_flag_rate_spread": config.fairness_max_spread,
    }
    if not config.fairness_gate:
        logger.warning("fairness gate skipped (--no-fairness-gate): this guard was not checked")
        return {"status": "skipped (--no-fairness-gate)", **limits}
    if report is None:
        raise FairnessGateError(
            "fairness gate: no identity evaluation set to check the guard on; pass "
            "--identity-eval-data FILE (template_id,text,group,toxic) or --no-fairness-gate"
        )
    check_fairness_gate(
        report,
        max_benign_flag_rate=config.fairness_max_flag_rate,
        max_flag_rate_spread=config.fairness_max_spread,
    )
    return {"status": "passed", **limits}


def _bundled_path(relative: Path) -> Path | None:
    from fairgate.models.datasets import bundled_data_path
    from fairgate.models.errors import DataError

    try:
        return bundled_data_path(relative)
    except DataError:
        return None


def _read_lines(path: Path) -> list[str]:
    """Texts of a calibration file: one per line (``#`` comments skipped), or a CSV's ``text``."""
    if path.suffix.lower() in (".csv", ".tsv"):
        import pandas as pd

        frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str)
        if "text" not in frame.columns:
            raise GuardDataError(f"{path}: a calibration CSV needs a 'text' column")
        return [t for t in frame["text"].fillna("").tolist() if t.strip()]
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _fingerprint(texts: list[str]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    return f"sha256:{digest.hexdigest()}"


def build_guard(config: GuardBuildConfig, *, progress: bool = True) -> GuardBuildResult:
    """Build, export, check, evaluate and store the guard; returns the stored tag."""
    from fairgate.guardrails.onnx_model import OnnxTextModel
    from fairgate.models.export import check_parity, export_model_directory
    from fairgate.models.guard._card import render_guard_card
    from fairgate.models.guard.evaluation import category_roc_auc, score_texts
    from fairgate.models.store import save_model_directory

    started = time.perf_counter()
    if config.threads is not None:
        import torch

        # On a shared, loaded machine one thread avoids OpenMP barrier stalls (measured
        # 6-8x faster per step than two threads at load 10 on 2 cores).
        torch.set_num_threads(config.threads)
    source: GuardSource = parse_source(config.source, hf_config=config.hf_config)
    rules = [LabelRule.parse(text) for text in config.label_map]
    if rules and source.kind != "csv":
        raise SourceSpecError("--label-map only applies to --source csv:PATH; drop it")

    metadata: dict[str, Any] = {
        "role": "guard",
        "task": "multi_label_classification",
        "labels": list(CATEGORIES),
        "source": source.describe(),
        "source_kind": source.kind,
        "build_config": config.model_dump(mode="json"),
    }
    untrained: list[str] = []
    if source.kind in ("bundled", "csv"):
        logger.info("[1/5] reading data")
        if source.kind == "bundled":
            dataset, data_name = _bundled_toxicity(), f"bundled:{BUNDLED_TOXICITY.as_posix()}"
        else:
            dataset = read_guard_csv(
                source.path,  # type: ignore[union-attr]
                text_column=config.text_column,
                label_map=rules,
                soft_labels=config.soft_labels,
            )
            data_name = str(source.path)  # type: ignore[union-attr]
        splits = split_guard_data(
            dataset,
            seed=config.seed,
            test_fraction=config.test_fraction,
            validation_fraction=config.validation_fraction,
        )
        if config.test_split_out is not None:
            write_split(splits.test, config.test_split_out)
        normalizer = _normalization(config, trained=True)
        splits = _Splits(
            train=normalise_dataset(_cap(splits.train, config.max_train_rows, config.seed), normalizer),
            validation=normalise_dataset(splits.validation, normalizer),
            test=normalise_dataset(splits.test, normalizer),
        )
        train_rows = len(splits.train)  # before augmentation: what the data split gave
        augmented = augment_training_data(
            splits.train,
            swapper=_swapper() if config.counterfactual_variants else None,
            variants_per_text=config.counterfactual_variants,
            noise_fraction=config.noise_fraction,
            normalizer=normalizer,
            seed=config.seed,
        )
        splits = _Splits(train=augmented.data, validation=splits.validation, test=splits.test)
        logger.info(
            "[2/5] fine-tuning on %d rows (%s; %d counterfactual and %d noisy copies), "
            "validation %d, test %d",
            len(splits.train),
            ", ".join(dataset.known_categories),
            augmented.summary["counterfactual_copies"],
            augmented.summary["noisy_copies"],
            len(splits.validation),
            len(splits.test),
        )
        families = augmented.families if (augmented.families >= 0).any() else None
        model, tokenizer, training, base = _train(splits, config, data_name, progress, families)
        training["augmentation"] = augmented.summary
        untrained = [c for c in CATEGORIES if c not in dataset.known_categories]
        test, parity_source = splits.test, splits.validation.texts
        eval_name = f"{data_name} held-out test split ({config.test_fraction:g}, seed {config.seed})"
        metadata["data"] = {
            "source": data_name,
            "fingerprint": _labelled(dataset, dataset.known_categories, data_name).fingerprint,
            "layout": dataset.layout,
            "columns": dataset.columns,
            "rows": len(dataset),
            "sizes": {
                "train": train_rows,
                "validation": len(splits.validation),
                "test": len(splits.test),
            },
            "split_seed": config.seed,
        }
        metadata["training"] = training
    else:
        logger.info("[1/5] loading %s", source.describe())
        with tempfile.TemporaryDirectory(prefix="fairgate-detoxify-") as scratch:
            if source.kind == "checkpoint":
                from fairgate.models.guard._checkpoint import load_detoxify_checkpoint

                converted = load_detoxify_checkpoint(
                    source.path, hf_config_dir=source.hf_config  # type: ignore[union-attr]
                )
            else:
                from fairgate.models.guard._detoxify_hub import fetch_detoxify

                converted = fetch_detoxify(source.variant, work_dir=Path(scratch))  # type: ignore[union-attr]
        model, tokenizer = converted.model, converted.tokenizer
        normalizer = _normalization(config, trained=False)
        metadata.update(converted.metadata)
        base = f"Detoxify {converted.metadata['detoxify']['model_name']} ({converted.metadata['detoxify']['model_type']})"
        logger.info("[2/5] no training: converted checkpoint")
        try:
            reference = _bundled_toxicity()
            test = split_guard_data(
                reference,
                seed=config.seed,
                test_fraction=config.test_fraction,
                validation_fraction=config.validation_fraction,
            ).test
            eval_name = (
                f"bundled:{BUNDLED_TOXICITY.as_posix()} test split "
                f"({config.test_fraction:g}, seed {config.seed})"
            )
        except Exception as error:
            logger.warning("no evaluation data for the converted guard: %s", error)
            test, eval_name = None, None
        parity_source = normalizer.apply(
            test.texts if test is not None else ["you are an idiot", "have a nice day"]
        )
        metadata["data"] = {"source": "none (converted checkpoint, not trained here)"}
        metadata["training"] = {
            "note": "not trained here: converted from a Detoxify checkpoint as published"
        }

    metadata["base"] = base
    metadata["untrained_categories"] = untrained
    metadata["normalization"] = normalizer.to_manifest()
    max_length = _max_length(config.max_length, tokenizer)
    parity_texts = list(parity_source)[: config.parity_texts]
    with tempfile.TemporaryDirectory(prefix="fairgate-guard-") as scratch:
        output = Path(scratch) / "model"
        logger.info("[3/5] exporting to ONNX (fp32 + int8)")
        export = export_model_directory(
            model,
            tokenizer,
            output,
            task="multi_label_classification",
            labels=list(CATEGORIES),
            max_length=max_length,
            normalization=normalizer,
        )
        logger.info("[4/5] parity check on %d texts", len(parity_texts))
        parity = check_parity(
            torch_model=model,
            tokenizer=tokenizer,
            model_dir=output,
            texts=parity_texts,
            task="multi_label_classification",
            max_length=max_length,
            fp32_tolerance=config.parity_tolerance,
            int8_min_agreement=config.int8_min_agreement,
        )
        metadata["parity"] = parity.as_dict()
        metadata["export"] = export
        logger.info("[5/5] evaluating the int8 model and storing it")
        onnx_model = OnnxTextModel.from_directory(
            output, variant="int8", intra_op_threads=config.threads
        )
        if test is not None:
            known = [c for c in CATEGORIES if c in test.known_categories]
            scores = score_texts(onnx_model, test.texts)
            columns = [CATEGORIES.index(c) for c in known]
            per_category = category_roc_auc(scores, test.targets[:, columns], known)
            aucs = [v["roc_auc"] for v in per_category.values() if not np.isnan(v["roc_auc"])]
            metadata["evaluation"] = {
                "data": eval_name,
                "n": len(test),
                "variant": "int8",
                "per_category": per_category,
                "mean_roc_auc": float(np.mean(aucs)) if aucs else float("nan"),
            }
        else:
            metadata["evaluation"] = {"status": "no evaluation data"}
        metadata["identity_fpr"] = measure_identity_fpr(
            onnx_model, _identity_path(config), variant="int8"
        )
        recommended = _recommended_thresholds(onnx_model, config)
        metadata["recommended_thresholds"] = recommended
        toxicity = recommended.get("categories", {}).get("toxicity", {})
        report = _identity_report(
            onnx_model,
            config,
            flag=toxicity.get("flag", 0.5),
            block=toxicity.get("block", 0.8),
        )
        metadata["identity_report"] = report.as_dict() if report is not None else {
            "status": "identity evaluation set not found"
        }
        metadata["fairness_gate"] = _gate(report, config)
        # Headline figures where `fairgate models` looks for them (metadata["metrics"]).
        per_category = metadata["evaluation"].get("per_category", {})
        metadata["metrics"] = {
            "roc_auc": per_category.get("toxicity", {}).get("roc_auc", float("nan")),
            "mean_roc_auc": metadata["evaluation"].get("mean_roc_auc", float("nan")),
            "identity_fpr_spread": metadata["identity_fpr"].get("spread", float("nan")),
            **(
                {
                    "identity_benign_flag_rate": report.benign_flag_rate,
                    "identity_flag_rate_spread": report.flag_rate_spread,
                    "identity_toxic_recall": report.toxic_recall_flag,
                    "identity_counterfactual_gap": (
                        report.counterfactual.mean_gap if report.counterfactual else float("nan")
                    ),
                }
                if report is not None
                else {}
            ),
        }
        metadata["build_seconds"] = round(time.perf_counter() - started, 1)
        (output / "MODEL_CARD.md").write_text(
            render_guard_card(name=config.name, metadata=metadata), encoding="utf-8"
        )
        tag = save_model_directory(
            config.name,
            output,
            metadata=store_safe(metadata),
            labels={"role": "guard", "source": source.kind},
        )
    return GuardBuildResult(tag=tag, metadata=metadata)


def _max_length(wanted: int, tokenizer: PreTrainedTokenizerBase) -> int:
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 100_000:
        return min(wanted, limit)
    return wanted
