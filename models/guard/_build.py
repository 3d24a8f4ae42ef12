"""Build ``fairgate-toxicity``: a source's recipe, then the pipeline's export -> store.

Each ``--source`` has a recipe (``_recipes``: bundled and csv are trained, checkpoint and
detoxify converted) that hands over a six-output model; the shared tail
(``fairgate.models.pipeline``) exports it with its normalisation, checks parity against
the PyTorch model (fp32 max |logit diff|, int8 agreement of the thresholded labels),
runs the guard's assessment of the *int8* ONNX model (what serving runs: ``_assess``),
writes the model card and stores it. The fairness gate is part of the assessment, so a
guard that fails it is never stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fairgate.models.guard._categories import CATEGORIES

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["GUARD_NAME", "GuardBuildConfig", "GuardBuildResult", "build_guard"]

logger = logging.getLogger(__name__)

GUARD_NAME = "fairgate-toxicity"
# Bottom encoder layers the bundled 6-layer MiniLM keeps frozen by default (GuardBuildConfig).
BUNDLED_FREEZE_LAYERS = 4


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
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(32, ge=1)
    # 3e-4 for the bundled MiniLM with its bottom 4 layers frozen (freeze_layers below):
    # the fewer trainable layers take a higher rate. With probability-space pairing, 1e-4
    # (all layers) left the identity report at a 2.8% benign flag rate and a 0.06 spread;
    # 3e-4 with 4 frozen layers keeps the identity figures and blocks fewer ordinary texts
    # (docs/guard.md, "What was tried").
    learning_rate: float = Field(3e-4, gt=0)
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
    # int8 mode: auto = static (calibrated on the training texts) when it passes parity, else dynamic.
    quantization_mode: Literal["auto", "static", "dynamic"] = "auto"
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    test_split_out: Path | None = None
    threads: int | None = Field(None, ge=1)
    # Fair and robust by default (docs/guard.md): the input normalisation recorded in the
    # manifest ("auto": social-media rules for guards trained here, none for converted
    # checkpoints, which were trained on raw text), identity-swapped copies per training
    # text that names a group, noisy copies, and counterfactual logit pairing.
    normalization: Literal["auto", "social", "none"] = "auto"
    counterfactual_variants: int = Field(1, ge=0)
    # Copies of each toxic training text that names one group, about groups of other axes
    # (models/guard/_augment.py): every group is protected alike, also one alone on its axis.
    cross_group_variants: int = Field(4, ge=0)
    counterfactual_weight: float = Field(2.0, ge=0)
    counterfactual_space: Literal["probability", "logit"] = "probability"
    noise_fraction: float = Field(0.25, ge=0, le=1)
    freeze_embeddings: bool = True
    # Encoder layers kept frozen from the bottom (0: train all; None: 4 for the bundled
    # 6-layer MiniLM, 0 for any other base). Fewer trainable layers keep more of the
    # pretrained encoder, which helps a guard trained on a few thousand team-written texts
    # read real text it has never seen the like of: on Davidson's tweets, ROC AUC 0.794 with
    # every layer trained against 0.86-0.89 with 4 frozen (docs/guard.md).
    freeze_layers: int | None = Field(None, ge=0)

    def effective_freeze_layers(self) -> int:
        """The frozen-layer count the build uses (``freeze_layers``, or the base's default)."""
        if self.freeze_layers is not None:
            return self.freeze_layers
        return BUNDLED_FREEZE_LAYERS if self.base == "bundled" else 0
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
    # Where a guard the gate refuses is written (never to the store), to study why.
    rejected_out: Path | None = None


@dataclass(frozen=True, kw_only=True)
class GuardBuildResult:
    """The stored tag and the metadata stored with it."""

    tag: str
    metadata: dict[str, Any]


# The guard keeps u8 int8 weights on AVX2 (the classifier takes the faster signed 7-bit
# ones). The default guard's fp32 graph blocks 5.00% of Davidson's benign tweets, on the
# fair-guard target of 5%; any int8 graph lands a quarter point either side of it by
# chance: u8 weights 4.71% (4.76% with fused LayerNorms), signed 5.24% (loadtests.guard_quality, docs/models.md "Int8
# speed"). The guard's fairness figures were measured on u8 graphs, so it stays there
# until a guard recipe sits clear of the target.
GUARD_AVX2_SIGNED_WEIGHTS = False


def build_guard(config: GuardBuildConfig, *, progress: bool = True) -> GuardBuildResult:
    """Build, export, check, evaluate and store the guard; returns the stored tag."""
    from fairgate.models.guard._assess import GuardAssessment
    from fairgate.models.guard._card import GUARD_CARD
    from fairgate.models.guard._recipes import recipe_for
    from fairgate.models.guard._source import parse_source
    from fairgate.models.pipeline import StoreTarget, TrainedModel, export_and_store, limit_torch_threads
    from fairgate.models.static_int8 import StaticQuantization

    started = time.perf_counter()
    limit_torch_threads(config.threads)
    source = parse_source(config.source, hf_config=config.hf_config)
    prepared = recipe_for(source, config).prepare(config, progress=progress)
    metadata: dict[str, Any] = {
        "role": "guard",
        "task": "multi_label_classification",
        "labels": list(CATEGORIES),
        "source": source.describe(),
        "source_kind": source.kind,
        "build_config": config.model_dump(mode="json"),
        **prepared.metadata,
        "base": prepared.base,
        "untrained_categories": prepared.untrained,
        "normalization": prepared.normalization.to_manifest(),
    }
    stored = export_and_store(
        TrainedModel(
            model=prepared.model,
            tokenizer=prepared.tokenizer,
            task="multi_label_classification",
            labels=CATEGORIES,
            max_length=_max_length(config.max_length, prepared.tokenizer),
            normalization=prepared.normalization,
            parity_texts=list(prepared.parity_texts)[: config.parity_texts],
            calibration_texts=list(prepared.calibration_texts),
        ),
        target=StoreTarget(
            name=config.name,
            store_labels={"role": "guard", "source": source.kind},
            parity_tolerance=config.parity_tolerance,
            int8_min_agreement=config.int8_min_agreement,
            quantization_mode=config.quantization_mode,
            static=replace(
                StaticQuantization.for_method(config.calibration_method),
                avx2_signed_weights=GUARD_AVX2_SIGNED_WEIGHTS,
            ),
            onnx_threads=config.threads,
        ),
        metadata=metadata,
        assess=GuardAssessment(config=config, test=prepared.test, test_name=prepared.test_name),
        card=GUARD_CARD,
        started=started,
    )
    return GuardBuildResult(tag=stored.tag, metadata=stored.metadata)


def _max_length(wanted: int, tokenizer: PreTrainedTokenizerBase) -> int:
    """``--max-length``, capped at what the tokenizer's model accepts."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 100_000:
        return min(wanted, limit)
    return wanted
