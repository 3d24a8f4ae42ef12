"""Parse ``fairgate build guard --source ...`` into one typed value.

Four routes lead to the same model directory: ``bundled`` (our recipe on our data,
offline), ``detoxify:VARIANT`` (the published checkpoints, needs the internet),
``checkpoint:PATH`` with ``--hf-config DIR`` (a local Detoxify checkpoint, offline) and
``csv:PATH`` (the user's labelled data, offline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from fairgate.models.guard._errors import SourceSpecError

DetoxifyVariant = Literal["original", "unbiased", "multilingual", "original-small", "unbiased-small"]
DETOXIFY_VARIANTS: tuple[str, ...] = (
    "original",
    "unbiased",
    "multilingual",
    "original-small",
    "unbiased-small",
)

_FORMS = "bundled, detoxify:VARIANT, checkpoint:PATH (with --hf-config DIR) or csv:PATH"


class _Source(BaseModel):
    model_config = ConfigDict(frozen=True)


class BundledSource(_Source):
    """The bundled MiniLM fine-tuned on the project's own toxicity set."""

    kind: Literal["bundled"] = "bundled"

    def describe(self) -> str:
        return "bundled"


class DetoxifySource(_Source):
    """A published Detoxify checkpoint, downloaded through the detoxify package."""

    kind: Literal["detoxify"] = "detoxify"
    variant: DetoxifyVariant

    def describe(self) -> str:
        return f"detoxify:{self.variant}"


class CheckpointSource(_Source):
    """A local Detoxify checkpoint plus the Hugging Face config/tokenizer directory."""

    kind: Literal["checkpoint"] = "checkpoint"
    path: Path
    hf_config: Path

    def describe(self) -> str:
        return f"checkpoint:{self.path}"


class CsvSource(_Source):
    """The user's labelled CSV, fine-tuned with the bundled encoder."""

    kind: Literal["csv"] = "csv"
    path: Path

    def describe(self) -> str:
        return f"csv:{self.path}"


GuardSource = BundledSource | DetoxifySource | CheckpointSource | CsvSource


def parse_source(spec: str, *, hf_config: Path | str | None = None) -> GuardSource:
    """Turn a ``--source`` string into a typed source; errors name the form expected."""
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    if spec == "bundled":
        source: GuardSource = BundledSource()
    elif kind == "detoxify":
        if rest not in DETOXIFY_VARIANTS:
            raise SourceSpecError(
                f"unknown Detoxify variant {rest!r} in --source {spec!r}; "
                f"use one of: {', '.join('detoxify:' + v for v in DETOXIFY_VARIANTS)}"
            )
        source = DetoxifySource(variant=rest)  # type: ignore[arg-type]
    elif kind == "checkpoint" and rest:
        path = Path(rest).expanduser()
        if not path.is_file():
            raise SourceSpecError(
                f"checkpoint file {str(path)!r} not found; pass the path of a Detoxify "
                "checkpoint (a torch file with 'config' and 'state_dict'), e.g. "
                "--source checkpoint:~/.cache/torch/hub/checkpoints/toxic_original-c1212f89.ckpt"
            )
        if hf_config is None:
            raise SourceSpecError(
                f"--source {spec!r} needs --hf-config DIR: the Hugging Face config and "
                "tokenizer directory of the checkpoint's base model (config.json plus "
                "tokenizer files, e.g. a local copy of bert-base-uncased for 'original')"
            )
        config_dir = Path(hf_config).expanduser()
        if not (config_dir / "config.json").is_file():
            raise SourceSpecError(
                f"--hf-config {str(config_dir)!r} has no config.json; point it at the "
                "directory holding the base model's config.json and tokenizer files"
            )
        return CheckpointSource(path=path, hf_config=config_dir)
    elif kind == "csv" and rest:
        path = Path(rest).expanduser()
        if not path.is_file():
            raise SourceSpecError(f"CSV file {str(path)!r} not found (from --source {spec!r})")
        source = CsvSource(path=path)
    else:
        raise SourceSpecError(f"unknown guard source {spec!r}; use {_FORMS}")
    if hf_config is not None:
        raise SourceSpecError(
            f"--hf-config only applies to --source checkpoint:PATH, not {spec!r}; drop it"
        )
    return source
