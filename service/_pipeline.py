"""One batch through the guarded path: screen -> classify -> review -> typed results.

Pure Python over the ONNX classifier and the guard, no BentoML, so it is unit-tested
in-process and the service only adds HTTP and batching around it. The batch is the unit:
one tokenizer call (shared with the guard when both models read text the same way), one
guard screen, one classifier run, one review. With a ``classifier_runner`` the classifier
runs on the whole batch beside the screen (the answers for items the screen blocks are
discarded); without one it runs after the screen, on the items it let through.

Locking: none of its own. A batch runs under the guard's lock (:attr:`BatchGuard.lock`),
the one lock around the state batches share; see :class:`GuardedClassifier`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Executor, Future
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from fairgate.guardrails.encoding import Encoding, TokenizingModel, can_share_encoding
from fairgate.guardrails.explain import DEFAULT_MAX_WORDS, DEFAULT_TOP_K, occlude
from fairgate.guardrails.probe import ProbeClassifier
from fairgate.service.schemas import ClassifyResult, ItemExplanation

if TYPE_CHECKING:
    from fairgate.guardrails.decision import Decision, GuardStatus, Screen, ScreenStage
    from fairgate.guardrails.explain import Explanation
    from fairgate.guardrails.groups import RequestGroup
    from fairgate.guardrails.metrics import GuardMetrics
    from fairgate.guardrails.probe import ProbeRecord
    from fairgate.guardrails.probe_runner import BackgroundProbe
    from fairgate.guardrails.scorers import ToxicityScorer

__all__ = ["BatchGuard", "ClassifierModel", "GuardedClassifier", "ItemLike", "ModelFailure", "can_share_encoding"]

logger = logging.getLogger(__name__)

# The classifier's answer for a batch: probabilities [n, labels] and pooled embeddings or None.
_Predicted = tuple[np.ndarray, np.ndarray | None]


class ItemLike(Protocol):
    text: str
    group: str | None


class ClassifierModel(TokenizingModel, Protocol):
    """What the pipeline calls on the classifier (:class:`fairgate.guardrails.OnnxTextModel` is one)."""

    @property
    def labels(self) -> Sequence[str]: ...

    def encode(self, texts: Sequence[str]) -> Encoding: ...

    def run(self, encoding: Encoding) -> np.ndarray: ...

    def probabilities(self, logits: np.ndarray) -> np.ndarray: ...


class BatchGuard(Protocol):
    """What the pipeline calls on the guard (:class:`fairgate.guardrails.guard.Guard` is one).

    ``metrics`` records the pipeline's batch sizes and inference time next to the guard's own;
    ``lock`` is the guard's reentrant lock, which the pipeline holds for a whole batch;
    ``status`` takes it itself.
    """

    @property
    def metrics(self) -> GuardMetrics: ...

    @property
    def lock(self) -> AbstractContextManager[object]: ...

    @property
    def probe_active(self) -> bool: ...

    def screen(
        self,
        texts: Sequence[str],
        groups: Sequence[RequestGroup] | None = None,
        *,
        stage: ScreenStage = "input",
        encoding: Encoding | None = None,
    ) -> list[Screen]: ...

    def review(
        self, screens: Sequence[Screen], labels: Sequence[str | None], *, embeddings: np.ndarray | None = None
    ) -> list[Decision]: ...

    def status(self) -> GuardStatus: ...

    def explain(
        self,
        texts: Sequence[str],
        *,
        categories: Sequence[str] | None = None,
        top_k: int = ...,
        screens: Sequence[Screen] | None = None,
        max_words: int = ...,
        scorer: ToxicityScorer | None = None,
    ) -> list[Explanation]: ...

    def probe(
        self,
        texts: Sequence[str],
        screens: Sequence[Screen],
        labels: Sequence[str | None],
        *,
        scorer: ToxicityScorer | None = None,
        classifier: ProbeClassifier | None = None,
    ) -> list[ProbeRecord]: ...


class ModelFailure(RuntimeError):
    """The classifier failed on a batch: the items get an error, never a made-up label."""


class GuardedClassifier:
    """The classifier behind the guard, batch in, one :class:`ClassifyResult` per item out.

    ``guard`` is a :class:`fairgate.guardrails.Guard` (any :class:`BatchGuard`); its ``metrics``
    object records inference time and batch sizes, so every ``fairgate_`` metric lives in one
    registry. ``guard_model`` is the model behind the guard's scorer: when it reads text the
    way the classifier does (:func:`~fairgate.guardrails.encoding.can_share_encoding`,
    decided once here) one tokenizer call per batch feeds both.

    Locking: a batch runs under ``guard.lock`` (the guard's own reentrant lock; the guard's
    calls inside nest), and there is no second lock here. Holding it for the whole batch,
    not only around the guard's calls, keeps one batch at a time per worker wherever the
    batch comes from: the micro-batcher runs one batch at a time anyway, but with
    ``FAIRGATE_BATCHING=bentoml`` each route has its own dispatcher and two batches can
    arrive together. One at a time is what the sessions' thread counts are sized for, what
    a scorer deadline expects (one call in flight), and what makes :meth:`status` (the
    guard's, under the same lock) report whole batches.

    Overlap (``classifier_runner``, an executor with one thread; the service passes one
    unless ``FAIRGATE_OVERLAP_MODELS=false``): the classifier runs over the whole batch on
    the runner's thread while the guard screens it, and the batch waits for both before
    the review, still under the lock. A single request then costs the slower model's time
    instead of the sum of both: on 2 cores, guard and classifier together took 10.2 ms per
    single text overlapped at one ONNX thread each against 13.5 ms one after the other at two
    (docs/service.md, "Overlap"). What it costs: the classifier also runs on the items the
    screen blocks (a fraction of a percent of ordinary traffic); their answers are dropped
    unseen, never returned, reviewed or counted. A classifier failure on a batch the screen
    blocked whole is logged and does not fail the batch, as when the classifier never ran.

    Explanations (``"explain": true`` on an item) are computed last, under the same lock,
    after the review has decided: they read the decision and never change it. The guard's
    categories are occluded with ``explain_scorer``, the guard's model *without* the
    scorer deadline (an occlusion batch costs about 30 screens: under the deadline it would
    count as a monitor error and keep the wrapper busy for the next batch's screen; see
    docs/service.md, "Explanations"); ``None`` uses the guard's own scorer. A batch where
    no item asks makes no extra call.

    The counterfactual probe (policy ``counterfactual``; :meth:`Guard.probe`) measures the
    decided batch on its sample: at most one more guard-model call (``explain_scorer``,
    outside the deadline for the same reason) and one more classifier run, each of at most
    ``max_variants_per_batch`` rows. It never changes a result. With ``probe_runner`` (the
    service passes a :class:`~fairgate.guardrails.probe_runner.BackgroundProbe`) it runs
    after the batch is answered, on the runner's thread and outside the guard's lock, so no
    request waits for it; without one it runs inline, last in the batch (tests, embedding).
    """

    def __init__(
        self,
        *,
        classifier: ClassifierModel,
        guard: BatchGuard,
        guard_model: TokenizingModel | None = None,
        explain_scorer: ToxicityScorer | None = None,
        explain_max_words: int = DEFAULT_MAX_WORDS,
        explain_top_k: int = DEFAULT_TOP_K,
        clock: Callable[[], float] = time.perf_counter,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        probe_runner: BackgroundProbe | None = None,
        classifier_runner: Executor | None = None,
    ) -> None:
        self.classifier = classifier
        self.classifier_runner = classifier_runner
        self.guard = guard
        self.share_encoding = can_share_encoding(classifier, guard_model)
        self.explain_scorer = explain_scorer
        self.explain_max_words = explain_max_words
        self.explain_top_k = explain_top_k
        self._clock = clock
        self._new_id = new_id
        self._embedding_shape_warned = False
        if probe_runner is not None and explain_scorer is None:
            raise ValueError(
                "a background probe_runner needs explain_scorer, the guard's model without the scorer deadline: "
                "through the guard's own deadline-wrapped scorer a probe in flight would fail a concurrent screen"
            )
        self.probe_runner = probe_runner
        self._probe_classifier = ProbeClassifier(
            labels=tuple(classifier.labels), predict=self._classifier_probabilities
        )

    def classify(self, items: Sequence[ItemLike]) -> list[ClassifyResult]:
        """Decide a batch; results in input order."""
        if not items:
            return []
        texts = [item.text for item in items]
        groups = [item.group for item in items]
        explain = [i for i, item in enumerate(items) if getattr(item, "explain", False) is True]
        with self.guard.lock:
            results, screens = self._classify_locked(texts, groups)
            if explain:
                self._explain(texts, screens, explain, results)
        if not self.guard.probe_active:  # nothing to queue, nothing to count as dropped
            return results
        labels = [result.label for result in results]
        if self.probe_runner is None:
            self._probe(texts, screens, labels)
        else:  # answered now; probed when the runner's thread gets to it (or dropped and counted)
            self.probe_runner.submit(lambda: self._probe(texts, screens, labels))
        return results

    def _probe(self, texts: list[str], screens: Sequence[Screen], labels: list[str | None]) -> None:
        """The counterfactual probe on a decided batch: records metrics, never touches a result."""
        try:
            self.guard.probe(texts, screens, labels, scorer=self.explain_scorer, classifier=self._probe_classifier)
        except Exception:  # a measurement: log it, answer the decisions
            logger.exception("the counterfactual probe failed on a batch of %d items; the decisions stand", len(texts))

    def _shared_encoding(self, texts: list[str]) -> Encoding | None:
        """One tokenisation for both models, or None: each model then encodes for itself,
        inside its own error handling (a failure here must not fail the whole batch)."""
        if not self.share_encoding:
            return None
        try:
            return self.classifier.encode(texts)
        except Exception:  # logged; the per-model paths then handle a failure per item
            logger.exception("shared encoding failed; each model encodes its own batch")
            return None

    def _classify_locked(
        self, texts: list[str], groups: list[str | None]
    ) -> tuple[list[ClassifyResult], list[Screen]]:
        metrics = self.guard.metrics
        metrics.batch_size.labels(stage="request").observe(len(texts))
        encoding = self._shared_encoding(texts)
        every = list(range(len(texts)))
        ahead = self._run_ahead(texts, every, encoding)
        if ahead is not None:
            metrics.batch_size.labels(stage="classifier").observe(len(texts))
        try:
            screens = self.guard.screen(texts, groups, encoding=encoding)
        except BaseException:
            if ahead is not None:  # one batch at a time: let the classifier finish before the lock goes
                _settle(ahead)
            raise

        passed = [i for i, screen in enumerate(screens) if not screen.blocked]
        labels: list[str | None] = [None] * len(texts)
        scores: list[dict[str, float]] = [{} for _ in texts]
        embeddings: np.ndarray | None = None
        if not passed:
            if ahead is not None:  # every item blocked: its answer is not needed, nor is a failure fatal
                _settle(ahead)
        else:
            answered = _answer(ahead)  # a ModelFailure is raised here, as inline
            if answered is not None:
                probabilities, pooled = answered
                if len(passed) < len(texts):
                    probabilities = probabilities[passed]
                    pooled = None if pooled is None else pooled[passed]
            else:
                metrics.batch_size.labels(stage="classifier").observe(len(passed))
                probabilities, pooled = self._predict(texts, passed, encoding)
            names = self.classifier.labels
            for row, i in enumerate(passed):
                p = probabilities[row]
                labels[i] = names[int(np.argmax(p))]
                scores[i] = {name: round(float(v), 6) for name, v in zip(names, p, strict=True)}
            if pooled is not None:
                # One row per item; NaN rows for items the screen blocked (their answers are not used).
                embeddings = np.full((len(texts), pooled.shape[1]), np.nan, dtype=np.float32)
                embeddings[passed] = pooled

        if embeddings is not None:
            decisions = self.guard.review(screens, labels, embeddings=embeddings)
        else:
            decisions = self.guard.review(screens, labels)
        results: list[ClassifyResult] = []
        for decision, label, item_scores in zip(decisions, labels, scores, strict=True):
            blocked = decision.action == "block"
            results.append(
                ClassifyResult(
                    request_id=self._new_id(),
                    label=None if blocked else label,
                    scores={} if blocked else item_scores,
                    action=decision.action,
                    reasons=list(decision.reasons),
                    toxicity={k: round(float(v), 6) for k, v in decision.toxicity.items()},
                    groups=list(decision.groups),
                    domain_score=None if blocked else getattr(decision, "domain_score", None),
                )
            )
        return results, screens

    def _explain(
        self, texts: list[str], screens: Sequence[Screen], rows: list[int], results: list[ClassifyResult]
    ) -> None:
        """Attach an explanation to ``results[i]`` for each ``i`` in ``rows`` (after the decision).

        Guard: the toxicity categories the screen flagged or blocked, read from the screens
        (no re-scoring). Classifier: the label the result carries (none when blocked), on
        the classifier's model. A failure leaves the decision as it is and says so in
        ``explanation.error``.
        """
        sub_texts = [texts[i] for i in rows]
        top_k, max_words = self.explain_top_k, self.explain_max_words
        guard_part: list[Explanation | None] = [None] * len(rows)
        classifier_part: list[Explanation | None] = [None] * len(rows)
        error: str | None = None
        start = self._clock()
        try:
            guard_part = list(
                self.guard.explain(
                    sub_texts,
                    screens=[screens[i] for i in rows],
                    scorer=self.explain_scorer,
                    top_k=top_k,
                    max_words=max_words,
                )
            )
            labelled = [(k, results[i].label) for k, i in enumerate(rows) if results[i].label is not None]
            if labelled:
                explained = occlude(
                    self._classifier_probabilities,
                    list(self.classifier.labels),
                    [sub_texts[k] for k, _ in labelled],
                    [[label] for _, label in labelled if label is not None],
                    top_k=top_k,
                    max_words=max_words,
                )
                for (k, _), item in zip(labelled, explained, strict=True):
                    classifier_part[k] = item
        except Exception as failure:  # an explanation is not a decision: log it, answer the decision
            logger.exception("explaining %d items failed; their decisions stand", len(rows))
            error = f"the explanation could not be computed: {type(failure).__name__}"
        finally:
            self.guard.metrics.inference_duration.labels(model="explanation").observe(self._clock() - start)
        for k, i in enumerate(rows):
            explanation = ItemExplanation.of(guard_part[k], classifier_part[k])
            if error is not None:
                explanation = ItemExplanation(
                    words_total=explanation.words_total, words_occluded=0, truncated=False, labels=[], error=error
                )
            results[i] = results[i].model_copy(update={"explanation": explanation})

    def _classifier_probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """One classifier run over ``texts`` (the occlusion rows)."""
        return self.classifier.probabilities(self.classifier.run(self.classifier.encode(list(texts))))

    def _run_ahead(self, texts: list[str], rows: list[int], encoding: Encoding | None) -> Future[_Predicted] | None:
        """The classifier on ``rows``, submitted to run beside the screen; None when there is
        no runner or it takes no more work (shut down: the service is closing), and the
        classifier then runs inline after the screen, on the items it passed."""
        if self.classifier_runner is None:
            return None
        try:
            return self.classifier_runner.submit(self._predict, texts, rows, encoding)
        except RuntimeError:  # "cannot schedule new futures after shutdown"
            logger.info("the classifier runner is shut down (the service is closing); running the classifier inline")
            return None

    def _predict(self, texts: list[str], rows: list[int], encoding: Encoding | None) -> _Predicted:
        """Probabilities of the classifier for ``rows``: one tokenizer call, one session run.

        Also the pooled embeddings when the classifier's graph has them (``run_outputs``: the
        same session run), for the guard's domain-shift monitor; else None.
        """
        start = self._clock()
        try:
            if encoding is None:
                batch = self.classifier.encode([texts[i] for i in rows])
            elif len(rows) == len(texts):
                batch = encoding
            else:
                batch = encoding.select(rows)
            run_outputs = getattr(self.classifier, "run_outputs", None)
            embeddings: np.ndarray | None = None
            if run_outputs is not None:
                logits, embeddings = run_outputs(batch)
            else:
                logits = self.classifier.run(batch)
            probabilities = self.classifier.probabilities(logits)
        except Exception as error:
            logger.exception("classifier failed on a batch of %d items", len(rows))
            raise ModelFailure(f"the classifier failed on a batch of {len(rows)} items: {error}") from error
        finally:
            self.guard.metrics.inference_duration.labels(model="classifier").observe(self._clock() - start)
        if embeddings is not None and (embeddings.ndim != 2 or embeddings.shape[0] != len(rows)):
            # A broken graph's embedding output: serve without the domain monitor, never fail.
            if not self._embedding_shape_warned:
                logger.error(
                    "the classifier's embedding output has shape %s for %d items (want [items, dims]); "
                    "the domain-shift monitor gets no embeddings: rebuild the classifier",
                    embeddings.shape,
                    len(rows),
                )
                self._embedding_shape_warned = True
            embeddings = None
        return probabilities, embeddings

    def status(self) -> GuardStatus:
        """The guard's status; it takes the guard's lock, so it never sees half a batch.

        With a background probe, its queue (``pending``) and the batches it had to leave
        out (``dropped``) join the probe's figures.
        """
        status = self.guard.status()
        runner, probe = self.probe_runner, status.counterfactual
        if runner is None or probe is None:
            return status
        probe = probe.model_copy(update={"pending": runner.pending, "dropped": runner.dropped})
        return status.model_copy(update={"counterfactual": probe})


def _answer(future: Future[_Predicted] | None) -> _Predicted | None:
    """The overlapped classifier's answer, or None when there is none to wait for (not
    submitted, or cancelled by the service closing): the caller then runs it inline."""
    if future is None:
        return None
    try:
        return future.result()
    except CancelledError:
        logger.info("the overlapped classifier run was cancelled (the service is closing); running it inline")
        return None


def _settle(future: Future[Any]) -> None:
    """Wait for ``future`` and drop its outcome: a result nobody reads, or a failure already logged."""
    try:
        future.result()
    except Exception:  # _predict logged it; no item of this batch needed the answer
        logger.debug("the overlapped classifier run failed on a batch whose answers were not needed")
