"""How each guard source becomes a six-output model ready for export: one recipe per route.

Two recipes behind one protocol, :class:`GuardRecipe`: :class:`TrainRecipe` fine-tunes
the base encoder on labelled data (``bundled``, ``csv:PATH``) and :class:`ConvertRecipe`
converts a published Detoxify checkpoint (``detoxify:VARIANT``, ``checkpoint:PATH``).
:func:`recipe_for` is the one place that maps a parsed source to its recipe; the build
then hands the :class:`PreparedGuard` to the shared tail (``fairgate.models.pipeline``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, assert_never

from fairgate.models.errors import DataError
from fairgate.models.guard._augment import augment_training_data, normalise_dataset
from fairgate.models.guard._categories import CATEGORIES
from fairgate.models.guard._checkpoint import ConvertedGuard, load_detoxify_checkpoint
from fairgate.models.guard._csv import GuardDataset, LabelRule, read_guard_csv
from fairgate.models.guard._detoxify_hub import fetch_detoxify
from fairgate.models.guard._errors import SourceSpecError
from fairgate.models.guard._source import (
    BundledSource,
    CheckpointSource,
    CsvSource,
    DetoxifySource,
    GuardSource,
)
from fairgate.models.guard._splits import GuardSplits, cap_rows, split_guard_data, write_split

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from fairgate.guardrails.identity import CounterfactualSwapper
    from fairgate.guardrails.normalize import TextNormalization
    from fairgate.models.guard._build import GuardBuildConfig

__all__ = [
    "BUNDLED_TOXICITY",
    "ConvertRecipe",
    "GuardRecipe",
    "PreparedGuard",
    "TrainRecipe",
    "recipe_for",
]

logger = logging.getLogger(__name__)

BUNDLED_TOXICITY = Path("toxicity") / "toxicity.csv"
# Parity texts for a converted guard when even the bundled data cannot be read.
_FALLBACK_PARITY = ("you are an idiot", "have a nice day")


@dataclass(frozen=True, kw_only=True)
class PreparedGuard:
    """A six-output model ready for export, and what the build knows about it so far.

    ``test`` is scored by the int8 model (``None``: no evaluation data); ``parity_texts``
    are already normalised; ``metadata`` holds ``data``, ``training`` and, for converted
    checkpoints, ``detoxify``.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    normalization: TextNormalization
    base: str
    parity_texts: Sequence[str]
    test: GuardDataset | None
    test_name: str | None
    untrained: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # Normalised training texts that calibrate static int8 (empty for converted
    # checkpoints: their training data is not here, so they are quantised dynamically).
    calibration_texts: Sequence[str] = ()


class GuardRecipe(Protocol):
    """One route from a guard source to a :class:`PreparedGuard`."""

    def prepare(self, config: GuardBuildConfig, *, progress: bool) -> PreparedGuard: ...


def normalization_for(config: GuardBuildConfig, *, trained: bool) -> TextNormalization:
    """The input normalisation the model is trained and served with (see the config)."""
    from fairgate.guardrails.normalize import TextNormalization

    wanted = config.normalization
    if wanted == "auto":
        wanted = "social" if trained else "none"
    return TextNormalization.social() if wanted == "social" else TextNormalization.none()


def read_bundled_toxicity() -> GuardDataset:
    """The project's own labelled toxicity set (Jigsaw layout, shipped with fairgate)."""
    from fairgate.models.datasets import bundled_data_path

    return read_guard_csv(bundled_data_path(BUNDLED_TOXICITY))


def _swapper() -> CounterfactualSwapper:
    from fairgate.guardrails.identity import CounterfactualSwapper, Lexicon

    return CounterfactualSwapper(lexicon=Lexicon.from_yaml())


@dataclass(frozen=True, kw_only=True)
class TrainRecipe:
    """Fine-tune on labelled data: split, normalise, augment, train, rewire to six outputs.

    ``name`` names the data in the metadata; ``read`` reads it (called once, in ``prepare``).
    """

    name: str
    read: Callable[[], GuardDataset]

    def prepare(self, config: GuardBuildConfig, *, progress: bool) -> PreparedGuard:
        from fairgate.models.guard._train import as_labelled, finetune_guard

        logger.info("[1/5] reading data")
        dataset = self.read()
        splits = split_guard_data(
            dataset,
            seed=config.seed,
            test_fraction=config.test_fraction,
            validation_fraction=config.validation_fraction,
        )
        if config.test_split_out is not None:
            write_split(splits.test, config.test_split_out)
        normalizer = normalization_for(config, trained=True)
        splits = GuardSplits(
            train=normalise_dataset(cap_rows(splits.train, config.max_train_rows, config.seed), normalizer),
            validation=normalise_dataset(splits.validation, normalizer),
            test=normalise_dataset(splits.test, normalizer),
        )
        train_rows = len(splits.train)  # before augmentation: what the data split gave
        needs_swapper = config.counterfactual_variants or config.cross_group_variants
        swapper = _swapper() if needs_swapper else None
        augmented = augment_training_data(
            splits.train,
            swapper=swapper,
            variants_per_text=config.counterfactual_variants,
            noise_fraction=config.noise_fraction,
            normalizer=normalizer,
            seed=config.seed,
            cross_group=swapper,
            cross_group_variants=config.cross_group_variants,
        )
        splits = GuardSplits(train=augmented.data, validation=splits.validation, test=splits.test)
        logger.info(
            "[2/5] fine-tuning on %d rows (%s; %d counterfactual, %d cross-group and %d noisy copies), "
            "validation %d, test %d",
            len(splits.train),
            ", ".join(dataset.known_categories),
            augmented.summary["counterfactual_copies"],
            augmented.summary["cross_group_copies"],
            augmented.summary["noisy_copies"],
            len(splits.validation),
            len(splits.test),
        )
        families = augmented.families if (augmented.families >= 0).any() else None
        tuned = finetune_guard(splits, config, source=self.name, progress=progress, families=families)
        training = {**tuned.training, "augmentation": augmented.summary}
        data = {
            "source": self.name,
            "fingerprint": as_labelled(dataset, dataset.known_categories, self.name).fingerprint,
            "layout": dataset.layout,
            "columns": dataset.columns,
            "rows": len(dataset),
            "sizes": {"train": train_rows, "validation": len(splits.validation), "test": len(splits.test)},
            "split_seed": config.seed,
        }
        return PreparedGuard(
            model=tuned.model,
            tokenizer=tuned.tokenizer,
            normalization=normalizer,
            base=tuned.base,
            parity_texts=splits.validation.texts,
            test=splits.test,
            test_name=f"{self.name} held-out test split ({config.test_fraction:g}, seed {config.seed})",
            untrained=[c for c in CATEGORIES if c not in dataset.known_categories],
            metadata={"data": data, "training": training},
            calibration_texts=list(splits.train.texts),
        )


@dataclass(frozen=True, kw_only=True)
class ConvertRecipe:
    """Convert a Detoxify checkpoint as published: no training; scored on the bundled test split.

    ``describe`` names the source in the log; ``convert`` loads it, given a scratch directory.
    """

    describe: str
    convert: Callable[[Path], ConvertedGuard]

    def prepare(self, config: GuardBuildConfig, *, progress: bool) -> PreparedGuard:
        logger.info("[1/5] loading %s", self.describe)
        with tempfile.TemporaryDirectory(prefix="fairgate-detoxify-") as scratch:
            converted = self.convert(Path(scratch))
        normalizer = normalization_for(config, trained=False)
        detoxify = converted.metadata["detoxify"]
        logger.info("[2/5] no training: converted checkpoint")
        test, test_name = self._reference_test(config)
        return PreparedGuard(
            model=converted.model,
            tokenizer=converted.tokenizer,
            normalization=normalizer,
            base=f"Detoxify {detoxify['model_name']} ({detoxify['model_type']})",
            parity_texts=normalizer.apply(list(test.texts) if test is not None else list(_FALLBACK_PARITY)),
            test=test,
            test_name=test_name,
            metadata={
                **converted.metadata,
                "data": {"source": "none (converted checkpoint, not trained here)"},
                "training": {"note": "not trained here: converted from a Detoxify checkpoint as published"},
            },
        )

    @staticmethod
    def _reference_test(config: GuardBuildConfig) -> tuple[GuardDataset | None, str | None]:
        """The bundled set's test split for this seed, the one a trained guard is scored on."""
        try:
            test = split_guard_data(
                read_bundled_toxicity(),
                seed=config.seed,
                test_fraction=config.test_fraction,
                validation_fraction=config.validation_fraction,
            ).test
        except DataError as error:
            logger.warning("no evaluation data for the converted guard: %s", error)
            return None, None
        name = f"bundled:{BUNDLED_TOXICITY.as_posix()} test split ({config.test_fraction:g}, seed {config.seed})"
        return test, name


def recipe_for(source: GuardSource, config: GuardBuildConfig) -> GuardRecipe:
    """The recipe of a parsed ``--source``; ``--label-map`` is checked here (csv only)."""
    rules = [LabelRule.parse(text) for text in config.label_map]
    if rules and not isinstance(source, CsvSource):
        raise SourceSpecError("--label-map only applies to --source csv:PATH; drop it")
    match source:
        case BundledSource():
            return TrainRecipe(name=f"bundled:{BUNDLED_TOXICITY.as_posix()}", read=read_bundled_toxicity)
        case CsvSource(path=path):
            return TrainRecipe(
                name=str(path),
                read=lambda: read_guard_csv(
                    path, text_column=config.text_column, label_map=rules, soft_labels=config.soft_labels
                ),
            )
        case CheckpointSource(path=path, hf_config=hf_config):
            return ConvertRecipe(
                describe=source.describe(),
                convert=lambda _scratch: load_detoxify_checkpoint(path, hf_config_dir=hf_config),
            )
        case DetoxifySource(variant=variant):
            return ConvertRecipe(
                describe=source.describe(),
                convert=lambda scratch: fetch_detoxify(variant, work_dir=scratch),
            )
        case _:
            assert_never(source)
