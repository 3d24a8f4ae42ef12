"""Load a Detoxify checkpoint into a plain ``transformers`` model, with no network.

A Detoxify checkpoint is a torch file ``{"config": ..., "state_dict": ...}`` (what
detoxify's ``convert_weights.py`` writes): ``config["arch"]["args"]`` names the
transformers class (``model_name``, e.g. ``BertForSequenceClassification``), the hub id
of its base model (``model_type``, e.g. ``bert-base-uncased``), the tokenizer class and
``num_classes``; ``config["dataset"]["args"]["classes"]`` names the outputs.

``detoxify.load_checkpoint`` asks the hub for the base model's config even when given
``huggingface_config_path``, so we build the model ourselves from the local config
directory and load the state dict into it. We then cut the classification head down to
the six guard categories, in the guard's order: the ``unbiased`` and ``multilingual``
models have 16 outputs (``sexual_explicit`` and nine identity outputs besides the six),
and their order differs from ``original``'s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairgate.models.guard._categories import CATEGORIES, canonical_category, category_indices
from fairgate.models.guard._errors import CheckpointFormatError
from fairgate.models.guard._head import rewire_head

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

# Buffers that older transformers saved in state dicts and newer ones do not persist.
_IGNORABLE_SUFFIXES = ("position_ids",)


@dataclass(frozen=True)
class ConvertedGuard:
    """A six-output multi-label model, its fast tokenizer, and where they came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    metadata: dict[str, Any] = field(default_factory=dict)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read the torch file and check it has Detoxify's ``config`` + ``state_dict`` layout."""
    import pickle

    import torch

    try:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            if "weights_only" not in str(error):
                raise
            # detoxify.load_checkpoint itself loads with weights_only=False; the user named
            # this file explicitly, so we extend it the same trust, and say so.
            logger.warning(
                "checkpoint %s holds objects beyond tensors and plain config; loading it "
                "with weights_only=False as detoxify does (only do this for files you trust)",
                path,
            )
            loaded = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as error:
        raise CheckpointFormatError(
            f"cannot read {str(path)!r} as a torch checkpoint ({error}); pass a Detoxify "
            "checkpoint such as toxic_original-c1212f89.ckpt"
        ) from error
    if not isinstance(loaded, Mapping) or "config" not in loaded or "state_dict" not in loaded:
        keys = sorted(loaded) if isinstance(loaded, Mapping) else type(loaded).__name__
        raise CheckpointFormatError(
            f"{str(path)!r} is not a Detoxify checkpoint: it needs the keys 'config' and "
            f"'state_dict' (found {keys}); convert a Lightning checkpoint with detoxify's "
            "convert_weights.py first"
        )
    return dict(loaded)


def _arch_args(config: Mapping[str, Any], path: Path) -> dict[str, Any]:
    try:
        args = dict(config["arch"]["args"])
    except (KeyError, TypeError) as error:
        raise CheckpointFormatError(
            f"{str(path)!r}: config has no arch.args (model_type, model_name, "
            "tokenizer_name, num_classes) as Detoxify checkpoints do"
        ) from error
    for key in ("model_name", "num_classes"):
        if key not in args:
            raise CheckpointFormatError(
                f"{str(path)!r}: config.arch.args lacks {key!r}; a Detoxify checkpoint "
                "names the transformers class (model_name) and its output count (num_classes)"
            )
    return args


def _class_names(config: Mapping[str, Any], path: Path) -> list[str]:
    """Output names, where detoxify reads them (dataset.args.classes), else arch.args.classes."""
    for section in ("dataset", "arch"):
        try:
            classes = config[section]["args"]["classes"]
        except (KeyError, TypeError):
            continue
        if isinstance(classes, Sequence) and not isinstance(classes, str):
            return [str(name) for name in classes]
    raise CheckpointFormatError(
        f"{str(path)!r}: config has no dataset.args.classes (the output names); "
        "Detoxify checkpoints list them there"
    )


def _model_class(model_name: str, path: Path) -> type[PreTrainedModel]:
    import transformers

    model_class = getattr(transformers, str(model_name), None)
    if model_class is None or not str(model_name).endswith("ForSequenceClassification"):
        raise CheckpointFormatError(
            f"{str(path)!r}: model_name {model_name!r} is not a transformers "
            "*ForSequenceClassification class (Detoxify uses e.g. "
            "BertForSequenceClassification, RobertaForSequenceClassification)"
        )
    return model_class


def _state_dict(raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip Lightning's ``model.`` prefix, as detoxify's convert_weights.py does."""
    return {(key[6:] if key.startswith("model.") else key): value for key, value in raw.items()}


def keep_categories(
    model: PreTrainedModel, class_names: Sequence[str], *, source: str
) -> tuple[PreTrainedModel, list[int]]:
    """Cut the head down to the six categories, in our order; returns the kept indices."""
    try:
        indices = category_indices(class_names)
    except KeyError as error:
        raise CheckpointFormatError(
            f"{source}: its classes {list(class_names)} lack the guard categories "
            f"{error.args[0]}; the guard needs all of {', '.join(CATEGORIES)}"
        ) from None
    try:
        rewire_head(model, indices)
    except LookupError as error:
        raise CheckpointFormatError(f"{source}: {error}") from error
    return model, indices


def load_detoxify_checkpoint(path: Path | str, *, hf_config_dir: Path | str) -> ConvertedGuard:
    """Build the checkpoint's model from a local config dir, load its weights, keep six outputs.

    No network: the config and tokenizer come only from ``hf_config_dir``.
    """
    import torch  # noqa: F401  (fail early with a clear ImportError if [train] is missing)
    from transformers import AutoTokenizer

    path = Path(path)
    config_dir = Path(hf_config_dir)
    loaded = read_checkpoint(path)
    config = loaded["config"]
    args = _arch_args(config, path)
    class_names = _class_names(config, path)
    num_classes = int(args["num_classes"])
    if len(class_names) > num_classes:
        raise CheckpointFormatError(
            f"{str(path)!r}: {len(class_names)} class names but num_classes={num_classes}"
        )
    model_class = _model_class(args["model_name"], path)

    config_file = config_dir / "config.json"
    local_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    expected_type = model_class.config_class.model_type
    if local_type != expected_type:
        raise CheckpointFormatError(
            f"--hf-config {str(config_dir)!r} is a {local_type!r} config but the checkpoint "
            f"is a {args['model_name']} ({expected_type!r}, base {args.get('model_type')!r}); "
            f"point --hf-config at a local copy of {args.get('model_type')!r}"
        )
    hf_config = model_class.config_class.from_pretrained(
        config_dir, num_labels=num_classes, local_files_only=True
    )
    model = model_class(hf_config)
    state = _state_dict(loaded["state_dict"])
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise CheckpointFormatError(
            f"{str(path)!r} does not fit {args['model_name']} built from "
            f"{str(config_file)!r} ({str(error).splitlines()[0]} ...); --hf-config must be "
            f"the exact base model the checkpoint was trained from ({args.get('model_type')!r})"
        ) from error
    missing = [key for key in missing if not key.endswith(_IGNORABLE_SUFFIXES)]
    unexpected = [key for key in unexpected if not key.endswith(_IGNORABLE_SUFFIXES)]
    if missing or unexpected:
        raise CheckpointFormatError(
            f"{str(path)!r} does not fit {args['model_name']} built from {str(config_file)!r}: "
            f"{len(missing)} missing weights (e.g. {missing[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}); --hf-config must be the base model the checkpoint "
            f"was trained from ({args.get('model_type')!r})"
        )
    model.eval()
    model, kept = keep_categories(model, class_names, source=str(path))

    tokenizer = AutoTokenizer.from_pretrained(config_dir, local_files_only=True, use_fast=True)
    if not tokenizer.is_fast:
        raise CheckpointFormatError(
            f"--hf-config {str(config_dir)!r}: no fast tokenizer could be built; add the "
            "base model's tokenizer.json to the directory"
        )
    output_names = [canonical_category(name) for name in class_names]
    identity = config.get("dataset", {}).get("args", {}).get("identity_classes", [])
    output_names += [str(name) for name in identity]
    metadata = {
        "detoxify": {
            "model_name": str(args["model_name"]),
            "model_type": args.get("model_type"),
            "tokenizer_name": args.get("tokenizer_name"),
            "num_classes": num_classes,
            "classes": class_names,
            "kept_outputs": dict(zip(CATEGORIES, kept, strict=True)),
            "dropped_outputs": [
                output_names[i] if i < len(output_names) else f"output_{i}"
                for i in range(num_classes)
                if i not in kept
            ],
            "note": "only the six guard categories are kept, in the guard's order",
        }
    }
    logger.info(
        "loaded Detoxify checkpoint %s (%s, %d outputs; kept %s)",
        path.name,
        args["model_name"],
        num_classes,
        kept,
    )
    return ConvertedGuard(model=model, tokenizer=tokenizer, metadata=metadata)
