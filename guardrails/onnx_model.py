"""A torch-free runtime for fairgate's ONNX text classifiers (docs/CONTRACTS.md, sections 1-2).

The model directory carries everything the runtime needs (``fairgate.json``, the ONNX
files, ``tokenizer.json``), so a product can ship it without BentoML or transformers.
``encode`` and ``run`` are split so that two models that read text the same way (same
tokenizer, truncation and input normalisation: :func:`can_share_encoding`) can share one
tokenisation of a batch (the classifier and the guard are both MiniLM).

``encode`` applies the text normalisation the manifest records (``normalization``, see
:mod:`fairgate.guardrails.normalize`) before tokenising, so every caller feeds the model
the text it was trained on; a manifest without the entry means no normalisation.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fairgate.guardrails.contracts import probabilities as _probabilities
from fairgate.guardrails.normalize import NormalizationError, TextNormalization

logger = logging.getLogger(__name__)

MANIFEST_NAME = "fairgate.json"
MANIFEST_FORMAT = "fairgate-onnx-text/1"
TASKS = ("single_label_classification", "multi_label_classification")
Variant = Literal["int8", "fp32"]
# Rows per length-sorted sub-batch inside run(); measured best on 2 cores (docs/benchmark.md).
DEFAULT_BUCKET_SIZE = 8


class ModelDirectoryError(ValueError):
    """The model directory is missing a file or its manifest is malformed."""


@dataclass(frozen=True, slots=True)
class Encoding:
    """One tokenised batch, padded to its longest item: int64 arrays ``[n, seq]``.

    ``fingerprint`` is the sha256 of the tokenizer that produced it and ``normalization``
    the text normalisation applied before it, so a model can refuse an encoding made by a
    different tokenizer, or of differently normalised text, instead of silently
    mis-reading the ids.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    fingerprint: str
    normalization: TextNormalization = field(default_factory=TextNormalization.none)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def select(self, rows: Sequence[int] | np.ndarray) -> Encoding:
        """The encoding of ``rows`` only, trimmed to the longest of them.

        Padding is on the right, so dropping the trailing all-padding columns loses no
        token: a subset of a batch (the items the guard let through, a length bucket)
        then pays only for its own longest item.
        """
        index = np.asarray(rows, dtype=np.int64)
        mask = self.attention_mask[index]
        used = np.nonzero(mask.any(axis=0))[0]
        width = int(used.max()) + 1 if len(used) else 1
        return Encoding(
            input_ids=self.input_ids[index, :width],
            attention_mask=mask[:, :width],
            token_type_ids=self.token_type_ids[index, :width],
            fingerprint=self.fingerprint,
            normalization=self.normalization,
        )

    def as_feeds(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The ONNX feed dict for the inputs the graph actually declares."""
        arrays = {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }
        return {name: arrays[name] for name in names}


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and check ``fairgate.json``; errors name the file, the key and the fix."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ModelDirectoryError(
            f"{path} not found: a fairgate model directory needs {MANIFEST_NAME}; "
            "rebuild the model with `fairgate build ...` or point at the store model's path"
        )
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ModelDirectoryError(f"{path} is not valid JSON ({error}); rebuild the model") from error
    if not isinstance(manifest, dict):
        raise ModelDirectoryError(f"{path} holds a JSON {type(manifest).__name__}, not an object; rebuild the model")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ModelDirectoryError(
            f"{path}: format is {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}; "
            "rebuild the model with this version of fairgate"
        )
    for key in ("task", "labels", "max_length", "files"):
        if key not in manifest:
            raise ModelDirectoryError(f"{path}: key {key!r} is missing; rebuild the model")
    if manifest["task"] not in TASKS:
        raise ModelDirectoryError(f"{path}: task is {manifest['task']!r}, expected one of {', '.join(TASKS)}")
    return manifest


def read_normalization(manifest: Mapping[str, Any], *, path: Path | None = None) -> TextNormalization:
    """The manifest's text normalisation; no ``normalization`` entry means none (older models)."""
    try:
        return TextNormalization.from_manifest(manifest.get("normalization"))
    except NormalizationError as error:
        where = path / MANIFEST_NAME if path is not None else MANIFEST_NAME
        raise ModelDirectoryError(f"{where}: {error}") from error


def can_share_encoding(classifier: OnnxTextModel, guard_model: OnnxTextModel | None) -> bool:
    """Whether one tokenisation of a batch can feed both models: the one rule for sharing.

    Same tokenizer file, same truncation length *and* same input normalisation: the
    fingerprint alone is not enough, since a model truncates at its own ``max_length``
    and tokenises the text its own normalisation produced. When this is False each model
    encodes the raw texts itself.
    """
    return (
        guard_model is not None
        and classifier.tokenizer_fingerprint == guard_model.tokenizer_fingerprint
        and classifier.max_length == guard_model.max_length
        and classifier.normalization == guard_model.normalization
    )


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (tokenizer.json can be several MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class OnnxTextModel:
    """An ONNX text classifier with its tokenizer: ``encode`` -> ``run`` -> probabilities.

    Build it with :meth:`from_directory`; the constructor takes already-loaded parts so
    tests can hand in a tokenizer and a session directly.
    """

    def __init__(
        self,
        *,
        tokenizer: Any,
        session: Any,
        labels: Sequence[str],
        task: str,
        max_length: int,
        tokenizer_fingerprint: str,
        output_name: str = "logits",
        variant: str = "fp32",
        path: Path | None = None,
        bucket_size: int | None = DEFAULT_BUCKET_SIZE,
        normalization: TextNormalization | None = None,
    ) -> None:
        if task not in TASKS:
            raise ModelDirectoryError(f"task {task!r} is not one of {', '.join(TASKS)}")
        self._tokenizer = tokenizer
        self._session = session
        self.labels: tuple[str, ...] = tuple(labels)
        self.task = task
        self.max_length = int(max_length)
        self.tokenizer_fingerprint = tokenizer_fingerprint
        self.variant = variant
        self.path = path
        if bucket_size is not None and bucket_size < 1:
            raise ValueError(f"bucket_size={bucket_size} must be at least 1 (or None for no buckets)")
        self.bucket_size = bucket_size
        self.normalization = normalization if normalization is not None else TextNormalization.none()
        self._output_name = output_name
        self._input_names = tuple(item.name for item in session.get_inputs())
        self._configure_tokenizer()

    @classmethod
    def from_directory(
        cls,
        path: str | Path,
        *,
        variant: Variant = "int8",
        intra_op_threads: int | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        bucket_size: int | None = DEFAULT_BUCKET_SIZE,
    ) -> OnnxTextModel:
        """Load a model directory (CONTRACTS section 1) with ONNX Runtime.

        ``intra_op_threads=None`` lets ONNX Runtime choose; the service sets it per worker
        so that several workers do not oversubscribe the cores.
        """
        import onnxruntime as ort
        from tokenizers import Tokenizer

        directory = Path(path)
        manifest = read_manifest(directory)
        normalization = read_normalization(manifest, path=directory)
        files: Mapping[str, str] = manifest["files"]
        if variant not in ("int8", "fp32"):
            raise ModelDirectoryError(f"variant {variant!r} is not int8 or fp32; pick one of them")
        if variant not in files:
            raise ModelDirectoryError(
                f"{directory / MANIFEST_NAME}: files has no {variant!r} entry; "
                f"available: {', '.join(sorted(k for k in files if k != 'tokenizer'))}"
            )
        model_file = directory / files[variant]
        tokenizer_file = directory / files.get("tokenizer", "tokenizer.json")
        for required in (model_file, tokenizer_file):
            if not required.is_file():
                raise ModelDirectoryError(
                    f"{required} not found (named in {MANIFEST_NAME}); rebuild the model"
                )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads is not None:
            options.intra_op_num_threads = int(intra_op_threads)
        # Idle intra-op threads spin by default and burn the cores the event loop, the
        # other model and neighbours need: 2 threads spinning cost 25-29 CPU ms per text
        # on the 2-core machine under load, 9-10 ms without (docs/benchmark.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(model_file), sess_options=options, providers=list(providers))
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        logger.info(
            "loaded %s (%s, normalization %s/%d) from %s",
            manifest["task"],
            variant,
            normalization.name,
            normalization.version,
            directory,
        )
        return cls(
            tokenizer=tokenizer,
            session=session,
            labels=manifest["labels"],
            task=manifest["task"],
            max_length=manifest["max_length"],
            tokenizer_fingerprint=file_sha256(tokenizer_file),
            output_name=manifest.get("output_name", "logits"),
            variant=variant,
            path=directory,
            bucket_size=bucket_size,
            normalization=normalization,
        )

    def _configure_tokenizer(self) -> None:
        """Truncate to ``max_length`` and pad to the longest item of each batch."""
        tokenizer = self._tokenizer
        tokenizer.enable_truncation(max_length=self.max_length)
        padding = tokenizer.padding
        if padding is not None:
            pad_id, pad_token, pad_type_id = padding["pad_id"], padding["pad_token"], padding["pad_type_id"]
        else:
            pad_token = next(
                (tok for tok in ("[PAD]", "<pad>", "<PAD>") if tokenizer.token_to_id(tok) is not None),
                None,
            )
            if pad_token is None:
                raise ModelDirectoryError(
                    "tokenizer.json has no padding config and no [PAD]/<pad> token; "
                    "save the tokenizer with a pad token"
                )
            pad_id, pad_type_id = tokenizer.token_to_id(pad_token), 0
        tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token, pad_type_id=pad_type_id, length=None)

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._input_names

    def encode(self, texts: Sequence[str]) -> Encoding:
        """Normalise and tokenise a batch in one tokenizer call, padded to its longest item.

        The normalisation is the one the model was trained with (its manifest's), applied
        here so that no caller can skip it or apply another.
        """
        items = self.normalization.apply(texts)
        if not items:
            empty = np.zeros((0, 0), dtype=np.int64)
            return Encoding(empty, empty, empty, self.tokenizer_fingerprint, self.normalization)
        encodings = self._tokenizer.encode_batch(items)
        return Encoding(
            input_ids=np.asarray([e.ids for e in encodings], dtype=np.int64),
            attention_mask=np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
            token_type_ids=np.asarray([e.type_ids for e in encodings], dtype=np.int64),
            fingerprint=self.tokenizer_fingerprint,
            normalization=self.normalization,
        )

    def accepts(self, encoding: Encoding) -> bool:
        """Whether ``encoding`` was made the way :meth:`encode` would make it (tokenizer and
        normalisation), so :meth:`run` can read its ids."""
        return encoding.fingerprint == self.tokenizer_fingerprint and encoding.normalization == self.normalization

    def run(self, encoding: Encoding) -> np.ndarray:
        """Logits ``float32 [n, n_labels]`` for the whole batch, in the batch's order.

        A batch is padded to its longest item, so one long text makes every row pay for
        its length. With ``bucket_size`` set, rows are sorted by their true length and run
        in sub-batches of ``bucket_size``, each trimmed to its own longest row (padding is
        on the right, so trimming drops only padding). Callers still make one call per
        batch; 32 SST-2 sentences went from 96 to 162 texts per CPU-second this way.
        """
        if encoding.fingerprint != self.tokenizer_fingerprint:
            raise ValueError(
                "encoding was made by a different tokenizer "
                f"({encoding.fingerprint[:12]} != {self.tokenizer_fingerprint[:12]}); "
                "encode the batch with this model's encode()"
            )
        if encoding.normalization != self.normalization:
            raise ValueError(
                f"encoding was made from text normalised with {encoding.normalization.name!r}, "
                f"this model reads text normalised with {self.normalization.name!r}; "
                "encode the batch with this model's encode()"
            )
        if len(encoding) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if self.bucket_size is None or len(encoding) <= self.bucket_size:
            return self._run_feeds(encoding.as_feeds(self._input_names))
        order = np.argsort(encoding.attention_mask.sum(axis=1), kind="stable")
        logits = np.empty((len(encoding), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), self.bucket_size):
            rows = order[start : start + self.bucket_size]
            logits[rows] = self._run_feeds(encoding.select(rows).as_feeds(self._input_names))
        return logits

    def _run_feeds(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        (logits,) = self._session.run([self._output_name], dict(feeds))
        return np.asarray(logits, dtype=np.float32)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Softmax for single-label models, independent sigmoids for multi-label ones."""
        return _probabilities(logits.astype(np.float64), self.task).astype(np.float32)

    def predict_proba(self, texts: Sequence[str], *, encoding: Encoding | None = None) -> np.ndarray:
        """Probabilities ``[n, n_labels]``; reuses ``encoding`` when the caller has one."""
        return self.probabilities(self.run(encoding if encoding is not None else self.encode(texts)))
