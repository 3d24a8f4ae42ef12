"""A torch-free runtime for fairgate's ONNX text classifiers (docs/CONTRACTS.md, sections 1-2).

The model directory carries everything the runtime needs (``fairgate.json``, the ONNX
files, ``tokenizer.json``), so a product can ship it without BentoML or transformers; its
manifest is read and checked by :mod:`fairgate.guardrails.manifest`. ``encode`` and
``run`` are split so that two models that read text the same way (the one rule:
:mod:`fairgate.guardrails.encoding`) can share one tokenisation of a batch (the
classifier and the guard are both MiniLM).

``encode`` applies the text normalisation the manifest records (``normalization``, see
:mod:`fairgate.guardrails.normalize`) before tokenising, so every caller feeds the model
the text it was trained on; a manifest without the entry means no normalisation.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fairgate.guardrails.contracts import TASKS
from fairgate.guardrails.contracts import probabilities as _probabilities
from fairgate.guardrails.domain import DomainReference, DomainStatsError
from fairgate.guardrails.encoding import (
    Encoding,
    EncodingMismatchError,
    Tokenization,
    can_share_encoding,
    tokenization_mismatch,
    tokenization_of,
)
from fairgate.guardrails.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    ModelDirectoryError,
    Variant,
    read_manifest,
    read_normalization,
)
from fairgate.guardrails.normalize import TextNormalization

# Encoding, the sharing rule and the manifest reader lived here before they got their own
# modules; they stay importable from here.
__all__ = [
    "DEFAULT_BUCKET_SIZE",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "TASKS",
    "Encoding",
    "EncodingMismatchError",
    "ModelDirectoryError",
    "OnnxTextModel",
    "Variant",
    "can_share_encoding",
    "file_sha256",
    "read_manifest",
    "read_normalization",
]

logger = logging.getLogger(__name__)

# Rows per length-sorted sub-batch inside run(); measured best on 2 cores (docs/benchmark.md).
DEFAULT_BUCKET_SIZE = 8


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
        embedding_output: str | None = None,
        domain: Mapping[str, Any] | None = None,
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
        outputs = {item.name for item in session.get_outputs()} if hasattr(session, "get_outputs") else set()
        # Only an output the graph really has: a manifest naming one the graph lacks is a
        # broken directory, and serving then runs without the embedding rather than failing.
        self.embedding_output = embedding_output if embedding_output in outputs else None
        if embedding_output is not None and self.embedding_output is None:
            logger.warning("%s: the graph has no output %r named in the manifest", path, embedding_output)
        self._domain_entry = dict(domain) if domain is not None else None
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
        model_file, tokenizer_file = manifest.resolve_files(directory, variant)
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
        normalization = manifest.text_normalization
        logger.info(
            "loaded %s (%s, normalization %s/%d) from %s",
            manifest.task,
            variant,
            normalization.name,
            normalization.version,
            directory,
        )
        return cls(
            tokenizer=tokenizer,
            session=session,
            labels=manifest.labels,
            task=manifest.task,
            max_length=manifest.max_length,
            tokenizer_fingerprint=file_sha256(tokenizer_file),
            output_name=manifest.output_name,
            variant=variant,
            path=directory,
            bucket_size=bucket_size,
            normalization=normalization,
            embedding_output=manifest.embedding_output,
            domain=manifest.domain,
        )

    def domain_reference(self) -> tuple[DomainReference | None, str | None]:
        """This variant's domain reference statistics, or None and why not (for one log line).

        Models built before the statistics existed have neither the embedding output nor
        the manifest's ``domain`` entry; they serve as before, with the monitor off.
        """
        if self.embedding_output is None:
            return None, "the classifier has no embedding output (built before domain statistics; rebuild it)"
        if self._domain_entry is None or self.path is None:
            return None, "the classifier's manifest has no domain statistics (rebuild it)"
        path = self.path / str(self._domain_entry.get("file", ""))
        try:
            return DomainReference.load(path, entry=self._domain_entry, variant=self.variant), None
        except DomainStatsError as error:
            return None, f"the classifier's domain statistics cannot be used: {error}"

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

    @property
    def tokenization(self) -> Tokenization:
        """How :meth:`encode` turns text into ids (tokenizer, truncation, normalisation)."""
        return tokenization_of(self)

    def encode(self, texts: Sequence[str]) -> Encoding:
        """Normalise and tokenise a batch in one tokenizer call, padded to its longest item.

        The normalisation is the one the model was trained with (its manifest's), applied
        here so that no caller can skip it or apply another.
        """
        items = self.normalization.apply(texts)
        if not items:
            empty = np.zeros((0, 0), dtype=np.int64)
            return Encoding(empty, empty, empty, self.tokenizer_fingerprint, self.normalization, self.max_length)
        encodings = self._tokenizer.encode_batch(items)
        return Encoding(
            input_ids=np.asarray([e.ids for e in encodings], dtype=np.int64),
            attention_mask=np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
            token_type_ids=np.asarray([e.type_ids for e in encodings], dtype=np.int64),
            fingerprint=self.tokenizer_fingerprint,
            normalization=self.normalization,
            max_length=self.max_length,
        )

    def accepts(self, encoding: Encoding) -> bool:
        """Whether ``encoding`` was made the way :meth:`encode` would make it, so :meth:`run`
        can read its ids (:func:`~fairgate.guardrails.encoding.tokenization_mismatch`)."""
        return tokenization_mismatch(self.tokenization, encoding.tokenization) is None

    def run(self, encoding: Encoding) -> np.ndarray:
        """Logits ``float32 [n, n_labels]`` for the whole batch, in the batch's order.

        A batch is padded to its longest item, so one long text makes every row pay for
        its length. With ``bucket_size`` set, rows are sorted by their true length and run
        in sub-batches of ``bucket_size``, each trimmed to its own longest row (padding is
        on the right, so trimming drops only padding). Callers still make one call per
        batch; 32 SST-2 sentences went from 96 to 162 texts per CPU-second this way.
        """
        mismatch = tokenization_mismatch(self.tokenization, encoding.tokenization)
        if mismatch is not None:
            raise EncodingMismatchError(f"encoding was {mismatch}; encode the batch with this model's encode()")
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

    def run_outputs(self, encoding: Encoding) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits and pooled embeddings ``[n, d]`` from the same session run (buckets as :meth:`run`).

        The embedding is a second output of the graph, so it costs no second forward pass;
        ``None`` for a model without it (then this is :meth:`run`).
        """
        if self.embedding_output is None:
            return self.run(encoding), None
        mismatch = tokenization_mismatch(self.tokenization, encoding.tokenization)
        if mismatch is not None:
            raise EncodingMismatchError(f"encoding was {mismatch}; encode the batch with this model's encode()")
        names = [self._output_name, self.embedding_output]
        if len(encoding) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
        if self.bucket_size is None or len(encoding) <= self.bucket_size:
            logits, embeddings = self._session.run(names, dict(encoding.as_feeds(self._input_names)))
            return np.asarray(logits, dtype=np.float32), np.asarray(embeddings, dtype=np.float32)
        order = np.argsort(encoding.attention_mask.sum(axis=1), kind="stable")
        all_logits = np.empty((len(encoding), len(self.labels)), dtype=np.float32)
        all_embeddings: np.ndarray | None = None
        for start in range(0, len(order), self.bucket_size):
            rows = order[start : start + self.bucket_size]
            logits, embeddings = self._session.run(names, dict(encoding.select(rows).as_feeds(self._input_names)))
            if all_embeddings is None:
                all_embeddings = np.empty((len(encoding), embeddings.shape[1]), dtype=np.float32)
            all_logits[rows] = logits
            all_embeddings[rows] = embeddings
        return all_logits, all_embeddings

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Softmax for single-label models, independent sigmoids for multi-label ones."""
        return _probabilities(logits.astype(np.float64), self.task).astype(np.float32)

    def predict_proba(self, texts: Sequence[str], *, encoding: Encoding | None = None) -> np.ndarray:
        """Probabilities ``[n, n_labels]``; reuses ``encoding`` when the caller has one."""
        return self.probabilities(self.run(encoding if encoding is not None else self.encode(texts)))
