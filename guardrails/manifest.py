"""The model directory's manifest, ``fairgate.json``: its one definition, reader and writer.

The exporter (:mod:`fairgate.models.export`) writes it, the ONNX runtime
(:mod:`fairgate.guardrails.onnx_model`), the CLI and the store read it. All of them go
through :class:`ModelManifest` and :func:`read_manifest`, so a directory that one side
accepts the other accepts too, and a bad one fails the same way everywhere: a
:class:`ModelDirectoryError` naming the file, the key and the fix (docs/CONTRACTS.md,
section 1).

The on-disk format is ``fairgate-onnx-text/1``; keys this version does not know are kept
(and written back) rather than refused, so a directory built by a newer fairgate with an
extra informational key still loads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic_core import ErrorDetails

from fairgate.guardrails.contracts import TASKS, Task
from fairgate.guardrails.normalize import TextNormalization

__all__ = [
    "DEFAULT_FILES",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "ModelDirectoryError",
    "ModelManifest",
    "Variant",
    "parse_manifest",
    "read_manifest",
    "read_normalization",
]

MANIFEST_NAME = "fairgate.json"
ManifestFormat = Literal["fairgate-onnx-text/1"]
MANIFEST_FORMAT: ManifestFormat = "fairgate-onnx-text/1"
Variant = Literal["int8", "fp32"]
"""Which ONNX graph of a model directory to load: dynamic int8 or the fp32 export."""
VARIANTS: tuple[Variant, ...] = ("int8", "fp32")
DEFAULT_FILES: Mapping[str, str] = {"fp32": "model.onnx", "int8": "model.int8.onnx", "tokenizer": "tokenizer.json"}
"""The file names the exporter writes (``files`` in the manifest); readers follow the manifest."""
_TOKENIZER_FILE = DEFAULT_FILES["tokenizer"]
_REBUILD = "rebuild the model with this version of fairgate (`fairgate build ...`)"


class ModelDirectoryError(ValueError):
    """The model directory is missing a file or its manifest is malformed."""


class ModelManifest(BaseModel):
    """``fairgate.json``: what a runtime needs to load and feed a model directory.

    ``normalization`` keeps the entry exactly as recorded (its ``unidata_version`` says
    which Unicode table the build used); :attr:`text_normalization` is the parsed spec,
    checked when the manifest is built, so an entry this fairgate cannot apply never
    reaches serving. No entry means no normalisation (models built before it existed).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    format: ManifestFormat = MANIFEST_FORMAT
    task: Task
    labels: tuple[str, ...] = Field(min_length=1)
    max_length: int = Field(strict=True, ge=1)
    files: dict[str, str]
    input_names: tuple[str, ...] | None = None
    """Informational: the runtime feeds the inputs the ONNX graph declares."""
    output_name: str = "logits"
    normalization: dict[str, Any] | None = None
    embedding_output: str | None = None
    """The graph's pooled-embedding output (the head's input); None: a model built without it."""
    domain: dict[str, Any] | None = None
    """Domain reference statistics (:mod:`fairgate.guardrails.domain`): format, file, figures."""

    _text_normalization: TextNormalization = PrivateAttr(default_factory=TextNormalization.none)

    @model_validator(mode="after")
    def _parse_normalization(self) -> ModelManifest:
        # Parsed once here (it may log a Unicode-table warning); a NormalizationError is a
        # ValueError, which pydantic reports as this model's validation error.
        self._text_normalization = TextNormalization.from_manifest(self.normalization)
        return self

    @property
    def text_normalization(self) -> TextNormalization:
        """The normalisation the model was trained with; the identity when none is recorded."""
        return self._text_normalization

    @property
    def tokenizer_file(self) -> str:
        """The tokenizer's file name (``files.tokenizer``; ``tokenizer.json`` when absent)."""
        return self.files.get("tokenizer", _TOKENIZER_FILE)

    def resolve_files(self, directory: Path, variant: Variant) -> tuple[Path, Path]:
        """The ONNX graph of ``variant`` and the tokenizer, checked to exist in ``directory``."""
        if variant not in VARIANTS:
            raise ModelDirectoryError(f"variant {variant!r} is not int8 or fp32; pick one of them")
        if variant not in self.files:
            available = ", ".join(sorted(k for k in self.files if k != "tokenizer")) or "none"
            raise ModelDirectoryError(
                f"{directory / MANIFEST_NAME}: files has no {variant!r} entry; available: {available}"
            )
        resolved = (directory / self.files[variant], directory / self.tokenizer_file)
        for required in resolved:
            if not required.is_file():
                raise ModelDirectoryError(f"{required} not found (named in {MANIFEST_NAME}); {_REBUILD}")
        return resolved

    def as_json(self) -> dict[str, Any]:
        """The JSON object as written to disk: ``format`` first, then the keys that were given
        (unknown ones included), so reading and writing back changes nothing."""
        return {"format": self.format, **self.model_dump(mode="json", exclude_unset=True)}

    def __getitem__(self, key: str) -> Any:
        """A key as on disk (``manifest["task"]``), for callers written against the JSON object."""
        return self.as_json()[key]

    def write(self, directory: Path) -> Path:
        """Write ``fairgate.json`` into ``directory`` (indented, one trailing newline); its path."""
        path = Path(directory) / MANIFEST_NAME
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")
        return path


def read_manifest(directory: str | Path) -> ModelManifest:
    """Read and check ``fairgate.json`` of ``directory``: the one reader of the manifest.

    Raises :class:`ModelDirectoryError` naming the file, the key and the fix for a
    missing file, bad JSON, another format, a missing or malformed key, or a text
    normalisation this fairgate does not implement.
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise ModelDirectoryError(
            f"{path} not found: a fairgate model directory needs {MANIFEST_NAME}; "
            "rebuild the model with `fairgate build ...` or point at the store model's path"
        )
    try:
        raw: object = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelDirectoryError(f"{path} is not valid JSON ({error}); {_REBUILD}") from error
    return parse_manifest(raw, source=path)


def parse_manifest(raw: object, *, source: str | Path = MANIFEST_NAME) -> ModelManifest:
    """Check a manifest's JSON object; ``source`` names it in errors (usually its path)."""
    if not isinstance(raw, dict):
        raise ModelDirectoryError(f"{source} holds a JSON {type(raw).__name__}, not an object; {_REBUILD}")
    if raw.get("format") != MANIFEST_FORMAT:
        raise ModelDirectoryError(
            f"{source}: format is {raw.get('format')!r}, expected {MANIFEST_FORMAT!r}; {_REBUILD}"
        )
    try:
        return ModelManifest.model_validate(raw)
    except ValidationError as error:
        problems = [_describe(detail) for detail in error.errors(include_url=False)]
        raise ModelDirectoryError(f"{source}: {'; '.join(problems)}") from None


def read_normalization(
    manifest: ModelManifest | Mapping[str, Any], *, path: Path | None = None
) -> TextNormalization:
    """The text normalisation a manifest records; no ``normalization`` entry means none.

    Takes a :class:`ModelManifest` (already checked) or a manifest's JSON object, which
    is checked like a whole manifest would be: an entry this fairgate cannot apply is a
    :class:`ModelDirectoryError` naming the file (``path``'s manifest) and the fix.
    """
    if isinstance(manifest, ModelManifest):
        return manifest.text_normalization
    source = path / MANIFEST_NAME if path is not None else MANIFEST_NAME
    try:
        return TextNormalization.from_manifest(manifest.get("normalization"))
    except ValueError as error:
        raise ModelDirectoryError(f"{source}: {error}") from error


def _describe(detail: ErrorDetails) -> str:
    """One pydantic error as the manifest's key, its bad value and the fix."""
    key = ".".join(str(part) for part in detail["loc"])
    kind = detail["type"]
    if kind == "missing":
        return f"key {key!r} is missing; {_REBUILD}"
    if not key:  # a model-level check: the normalisation entry, whose message names the fix
        error = detail.get("ctx", {}).get("error")
        return str(error) if error is not None else detail["msg"]
    if key == "task":
        return f"task is {detail['input']!r}, expected one of {', '.join(TASKS)}; {_REBUILD}"
    return f"{key} is {_shown(detail['input'])}: {detail['msg']}; {_REBUILD}"


def _shown(value: object) -> str:
    """A bad value for an error message, cut short (a manifest holds no user data)."""
    text = json.dumps(value) if isinstance(value, (Mapping, Sequence)) and not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
