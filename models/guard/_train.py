"""Fine-tune the base encoder on the categories guard data labels, then rewire it to six.

The generic fine-tuning loop (``fairgate.models.finetune``) learns only the categories the
data has labels for; :func:`~fairgate.models.guard._head.rewire_head` then gives the model
the guard's six outputs in the guard's order, the unlabelled ones disabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fairgate.models.guard._categories import CATEGORIES

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from fairgate.models.datasets import LabelledData
    from fairgate.models.guard._build import GuardBuildConfig
    from fairgate.models.guard._csv import GuardDataset
    from fairgate.models.guard._splits import GuardSplits

__all__ = ["FinetunedGuard", "as_labelled", "finetune_guard"]


@dataclass(frozen=True, kw_only=True)
class FinetunedGuard:
    """The six-output model, its tokenizer, the training record and the base's name."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    training: dict[str, Any]
    base: str


def as_labelled(data: GuardDataset, known: list[str], source: str) -> LabelledData:
    """Guard rows as the generic pipeline's data: only the ``known`` categories' targets."""
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


def finetune_guard(
    splits: GuardSplits,
    config: GuardBuildConfig,
    *,
    source: str,
    progress: bool,
    families: np.ndarray | None = None,
) -> FinetunedGuard:
    """Fine-tune on the train split (families: counterfactual logit pairing), rewire to six."""
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
        freeze_layers=config.effective_freeze_layers(),
        counterfactual_weight=config.counterfactual_weight if families is not None else 0.0,
        counterfactual_space=config.counterfactual_space,
    )
    result = finetune(
        model,
        tokenizer,
        train=as_labelled(splits.train, known, source),
        validation=as_labelled(splits.validation, known, source),
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
    return FinetunedGuard(model=model, tokenizer=tokenizer, training=training, base=encoder.describe())
