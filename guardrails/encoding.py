"""One tokenised batch, and the one rule for when a model can read a batch another model tokenised.

The classifier and the guard are both MiniLM: when they read text the same way, one
tokenizer call can feed both (docs/CONTRACTS.md, section 2). "The same way" is three
things, compared by :func:`tokenization_mismatch` and nowhere else: the tokenizer file
(its sha256, the *fingerprint*), the truncation length (``max_length``) and the text
normalisation applied before tokenising. The fingerprint alone is not enough: two
models with one tokenizer still truncate at their own ``max_length`` and tokenise the
text their own normalisation produced.

- :func:`can_share_encoding` asks it of two models (the service decides once, at load).
- ``OnnxTextModel.accepts`` / ``run`` ask it of a model and an :class:`Encoding`, so a
  model refuses ids it would mis-read instead of silently scoring them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fairgate.guardrails.normalize import TextNormalization

__all__ = [
    "Encoding",
    "EncodingMismatchError",
    "Tokenization",
    "TokenizingModel",
    "can_share_encoding",
    "tokenization_mismatch",
]


class EncodingMismatchError(ValueError):
    """A model was handed ids made by another tokenizer, truncation or normalisation."""


@dataclass(frozen=True, slots=True)
class Tokenization:
    """How text becomes ids: tokenizer fingerprint, truncation length, normalisation.

    ``max_length`` is ``None`` only for an :class:`Encoding` built by hand that does not
    record it; a model always knows its own.
    """

    fingerprint: str
    max_length: int | None
    normalization: TextNormalization


class TokenizingModel(Protocol):
    """A model that tokenises its own input: what the sharing rule looks at.

    ``OnnxTextModel`` is one; plain attributes satisfy the protocol, so test doubles do too.
    """

    @property
    def tokenizer_fingerprint(self) -> str: ...

    @property
    def max_length(self) -> int: ...

    @property
    def normalization(self) -> TextNormalization: ...


def tokenization_of(model: TokenizingModel) -> Tokenization:
    """The :class:`Tokenization` a model applies in its own ``encode``."""
    return Tokenization(model.tokenizer_fingerprint, int(model.max_length), model.normalization)


def tokenization_mismatch(reader: Tokenization, made: Tokenization) -> str | None:
    """Why ids made as ``made`` cannot be read by a model that reads as ``reader``; None if they can.

    The one rule for sharing a tokenisation: same tokenizer file, same truncation length
    and same text normalisation. A ``max_length`` of ``None`` on either side (a hand-built
    encoding that does not record it) is not compared. The reason reads after
    "encoding was ..." and names both sides.
    """
    if made.fingerprint != reader.fingerprint:
        return f"made by a different tokenizer ({made.fingerprint[:12]} != {reader.fingerprint[:12]})"
    if made.normalization != reader.normalization:
        return (
            f"made from text normalised with {made.normalization.name!r}, "
            f"this model reads text normalised with {reader.normalization.name!r}"
        )
    if made.max_length is not None and reader.max_length is not None and made.max_length != reader.max_length:
        return f"truncated at {made.max_length} tokens, this model truncates at {reader.max_length}"
    return None


def can_share_encoding(classifier: TokenizingModel, guard_model: TokenizingModel | None) -> bool:
    """Whether one tokenisation of a batch can feed both models (:func:`tokenization_mismatch`).

    When this is False each model encodes the raw texts itself.
    """
    return (
        guard_model is not None
        and tokenization_mismatch(tokenization_of(guard_model), tokenization_of(classifier)) is None
    )


@dataclass(frozen=True, slots=True)
class Encoding:
    """One tokenised batch, padded to its longest item: int64 arrays ``[n, seq]``.

    ``fingerprint`` (sha256 of the tokenizer), ``normalization`` and ``max_length`` say
    how it was made (:attr:`tokenization`), so a model can refuse an encoding it would
    mis-read. ``max_length`` is ``None`` when the maker did not record it.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    fingerprint: str
    normalization: TextNormalization = field(default_factory=TextNormalization.none)
    max_length: int | None = None

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def tokenization(self) -> Tokenization:
        """How this batch was tokenised, for :func:`tokenization_mismatch`."""
        return Tokenization(self.fingerprint, self.max_length, self.normalization)

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
            max_length=self.max_length,
        )

    def as_feeds(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The ONNX feed dict for the inputs the graph actually declares."""
        arrays = {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }
        return {name: arrays[name] for name in names}
