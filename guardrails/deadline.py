"""A time limit for toxicity scorers, so a hung scorer becomes a monitor error, not a hung request.

The guard calls its scorer inside ``screen``; a scorer that never answers would hold the
batch, and every request in it, forever. Wrapped with :func:`with_deadline`, a call that
outlives the limit raises :class:`ScorerTimeoutError`, which the guard treats like any
scorer failure: the policy's ``toxicity.on_error`` decides (flag, block or allow) and
``fairgate_monitor_errors_total`` counts it.

The wrapper keeps the scorer's protocol exactly, no more: a scorer that reuses another
model's tokenisation (:class:`~fairgate.guardrails.scorers.EncodingScorer`, with a
``tokenizer_fingerprint`` and ``score(texts, encoding=...)``) is wrapped by
:class:`EncodingScorerDeadline`, which offers both; any other scorer by
:class:`ScorerDeadline`, which offers neither, so ``reuses_encoding`` answers for the
wrapper what it answers for the scorer inside.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from typing import overload

import numpy as np

from fairgate.guardrails.onnx_model import Encoding
from fairgate.guardrails.scorers import EncodingScorer, ToxicityScorer, reuses_encoding

__all__ = ["EncodingScorerDeadline", "ScorerDeadline", "ScorerTimeoutError", "with_deadline"]


class ScorerTimeoutError(TimeoutError):
    """The toxicity scorer did not answer in time; the guard applies ``toxicity.on_error``."""


class ScorerDeadline:
    """A toxicity scorer with a time limit per call.

    Each call runs on one helper thread and waits at most ``timeout_s``. A call that times
    out keeps running (a thread cannot be killed); until it ends every new call fails at
    once instead of queueing behind it, so a hung scorer costs one thread, not an unbounded
    queue. Build it with :func:`with_deadline`, which picks this class or
    :class:`EncodingScorerDeadline` to match the scorer.
    """

    def __init__(self, *, scorer: ToxicityScorer, timeout_s: float) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s={timeout_s!r}; the scorer deadline must be a positive number of seconds")
        self.scorer = scorer
        self.timeout_s = timeout_s
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="fairgate-scorer")
        self._lock = threading.Lock()
        self._busy: concurrent.futures.Future[np.ndarray] | None = None

    @property
    def categories(self) -> Sequence[str]:
        return self.scorer.categories

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return self._call(lambda: self.scorer.score(texts), len(texts))

    def _call(self, work: Callable[[], np.ndarray], n: int) -> np.ndarray:
        with self._lock:
            if self._busy is not None and not self._busy.done():
                raise ScorerTimeoutError(
                    f"toxicity scorer still busy with a call that exceeded {self.timeout_s:g} s "
                    "(FAIRGATE_SCORER_TIMEOUT_S)"
                )
            future = self._pool.submit(work)
            self._busy = future
        try:
            return future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            raise ScorerTimeoutError(
                f"toxicity scorer took longer than {self.timeout_s:g} s on a batch of {n} "
                "(FAIRGATE_SCORER_TIMEOUT_S)"
            ) from None


class EncodingScorerDeadline(ScorerDeadline):
    """:class:`ScorerDeadline` for a scorer that reuses another model's tokenisation.

    Offers the inner scorer's ``tokenizer_fingerprint`` and passes ``encoding=`` through,
    so the guard still shares the classifier's tokenisation under the time limit.
    """

    def __init__(self, *, scorer: EncodingScorer, timeout_s: float) -> None:
        super().__init__(scorer=scorer, timeout_s=timeout_s)
        self._encoding_scorer = scorer

    @property
    def tokenizer_fingerprint(self) -> str:
        return self._encoding_scorer.tokenizer_fingerprint

    def score(self, texts: Sequence[str], *, encoding: Encoding | None = None) -> np.ndarray:
        return self._call(lambda: self._encoding_scorer.score(texts, encoding=encoding), len(texts))


@overload
def with_deadline(scorer: EncodingScorer, *, timeout_s: float) -> EncodingScorerDeadline: ...
@overload
def with_deadline(scorer: ToxicityScorer, *, timeout_s: float) -> ScorerDeadline: ...
def with_deadline(scorer: ToxicityScorer, *, timeout_s: float) -> ScorerDeadline:
    """``scorer`` under a time limit of ``timeout_s`` per call, offering what ``scorer`` offers."""
    if reuses_encoding(scorer):
        return EncodingScorerDeadline(scorer=scorer, timeout_s=timeout_s)
    return ScorerDeadline(scorer=scorer, timeout_s=timeout_s)
