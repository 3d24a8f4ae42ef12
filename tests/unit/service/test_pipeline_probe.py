"""The counterfactual probe in the guarded batch path, with tiny ONNX models: after the
decision, one extra call per model at most, never changing a result."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fairgate.guardrails import Guard, OnnxToxicityScorer, Policy
from fairgate.guardrails.onnx_model import OnnxTextModel
from fairgate.guardrails.probe_runner import BackgroundProbe
from fairgate.service._pipeline import GuardedClassifier
from fairgate.service.schemas import ClassifyResult
from tests.helpers.counting_models import CountingClassifier, CountingScorer
from tests.unit.guardrails.conftest import TOXICITY_LABELS, build_model_dir


@dataclass
class Item:
    text: str
    group: str | None = None


@dataclass
class Setup:
    pipeline: GuardedClassifier
    registry: CollectorRegistry
    screen_scorer: CountingScorer
    probe_scorer: CountingScorer
    classifier: CountingClassifier


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    # Guard: 'kill' blocks, 'idiot' flags. Classifier: 'nice' positive, 'idiot' negative.
    guard_dir = build_model_dir(
        tmp_path / "guard",
        labels=TOXICITY_LABELS,
        task="multi_label_classification",
        weights={
            "[CLS]": [-4.0] * 6,
            "idiot": [8.0, 0.0, 0.0, 0.0, 10.0, 0.0],
            "kill": [8.0, 6.0, 0.0, 10.0, 0.0, 0.0],
        },
    )
    classifier_dir = build_model_dir(
        tmp_path / "classifier",
        labels=["negative", "positive"],
        task="single_label_classification",
        weights={"nice": [0.0, 4.0], "idiot": [5.0, 0.0]},
    )
    return guard_dir, classifier_dir


def setup(dirs: tuple[Path, Path], *, probe: dict[str, object]) -> Setup:
    guard_dir, classifier_dir = dirs
    policy = Policy.from_mapping(
        {
            "version": "probe-service",
            "groups": {"source": "both", "allowed": ["female", "male", "muslim"]},
            "toxicity": {"categories": {"toxicity": {"flag": 0.5}, "threat": {"flag": 0.3, "block": 0.8}}},
            "rates": {"enabled": False},
            "counterfactual": probe,
        }
    )
    registry = CollectorRegistry()
    screen_scorer = CountingScorer(OnnxToxicityScorer.from_directory(guard_dir, variant="fp32"))
    probe_scorer = CountingScorer(OnnxToxicityScorer.from_directory(guard_dir, variant="fp32"))
    classifier = CountingClassifier(OnnxTextModel.from_directory(classifier_dir, variant="fp32"))
    guard = Guard(policy=policy, scorer=screen_scorer, registry=registry, rng=random.Random(1))
    ids = count()
    pipeline = GuardedClassifier(
        classifier=classifier,  # type: ignore[arg-type]
        guard=guard,
        explain_scorer=probe_scorer,
        new_id=lambda: f"id{next(ids)}",
    )
    return Setup(pipeline, registry, screen_scorer, probe_scorer, classifier)


ITEMS = [
    Item("nice day for women"),
    Item("you idiot muslims"),
    Item("kill the men"),
    Item("hello world"),
    Item("nice muslims and jews"),
]


def _decided(results: list[ClassifyResult]) -> list[dict[str, object]]:
    return [r.model_dump() for r in results]


def test_probe_in_the_pipeline_measures_after_the_decision_and_changes_nothing(dirs: tuple[Path, Path]) -> None:
    off = setup(dirs, probe={"enabled": False})
    on = setup(dirs, probe={"sample": 1.0, "max_variants_per_batch": 64})
    results_off = off.pipeline.classify(ITEMS)
    results_on = on.pipeline.classify(ITEMS)

    assert _decided(results_on) == _decided(results_off)
    assert [r.action for r in results_on] == ["allow", "flag", "block", "allow", "allow"]
    # The screen and the classifier as without the probe; then one probe call per model.
    assert on.screen_scorer.calls == off.screen_scorer.calls == [5]
    assert off.probe_scorer.calls == [] and off.classifier.calls == [4]
    # Rows: women (4: the text + 3 gender variants), muslims (6), men (4), muslims and jews (5).
    assert on.probe_scorer.calls == [19]
    # The classifier sees only the items it classified (the blocked "kill the men" is left out).
    assert on.classifier.calls == [4, 15]

    value = on.registry.get_sample_value
    assert value("fairgate_counterfactual_gap_count", {"kind": "religion", "model": "guard"}) == 2
    assert value("fairgate_counterfactual_gap_count", {"kind": "gender", "model": "classifier"}) == 1
    assert value("fairgate_counterfactual_variants_total", {"kind": "gender", "model": "guard"}) == 6
    # The tiny models do not read identity terms: every version scores the same.
    assert value("fairgate_counterfactual_gap_sum", {"kind": "religion", "model": "guard"}) == pytest.approx(0.0)
    assert (
        off.registry.get_sample_value("fairgate_counterfactual_gap_count", {"kind": "religion", "model": "guard"})
        is None
    )

    status = on.pipeline.status().counterfactual
    assert status is not None and status.enabled and status.sampled == 5
    by_kind = {k.kind: k for k in status.kinds}
    assert by_kind["religion"].items == 2 and by_kind["gender"].items == 2
    assert all(m.flips == 0 for m in by_kind["religion"].models)


def test_probe_respects_the_row_bound_in_the_pipeline(dirs: tuple[Path, Path]) -> None:
    bounded = setup(dirs, probe={"sample": 1.0, "max_variants_per_batch": 6, "kinds": ["religion"]})
    bounded.pipeline.classify([Item("you idiot muslims"), Item("nice muslims"), Item("nice hindus")])
    assert bounded.probe_scorer.calls == [6]
    assert bounded.classifier.calls == [3, 6]
    status = bounded.pipeline.status().counterfactual
    assert status is not None
    [religion] = status.kinds
    assert (religion.items, religion.skipped) == (1, 2)


class GatedScorer(CountingScorer):
    """A counting scorer whose calls wait for ``release`` (a probe still scoring)."""

    def __init__(self, inner: OnnxToxicityScorer) -> None:
        super().__init__(inner)
        self.entered = threading.Event()
        self.release = threading.Event()

    def score(self, texts: Sequence[str]) -> np.ndarray:
        self.entered.set()
        assert self.release.wait(10.0), "the test never released the probe"
        return super().score(texts)


def test_a_background_probe_holds_up_no_answer_and_measures_the_same(dirs: tuple[Path, Path]) -> None:
    inline = setup(dirs, probe={"sample": 1.0, "max_variants_per_batch": 64})
    background = setup(dirs, probe={"sample": 1.0, "max_variants_per_batch": 64})
    gated = GatedScorer(background.probe_scorer.inner)
    runner = BackgroundProbe(max_batches=1, on_dropped=background.pipeline.guard.metrics.counterfactual_dropped.inc)
    background.pipeline.explain_scorer = gated
    background.pipeline.probe_runner = runner
    try:
        expected = _decided(inline.pipeline.classify(ITEMS))
        # The first batch is answered while its probe is stuck in the probe's scorer ...
        first = background.pipeline.classify(ITEMS)
        assert gated.entered.wait(10.0)
        assert _decided(first) == expected
        # ... and so is the next: the probe holds neither the guard's lock nor the caller.
        second = background.pipeline.classify([Item("hello world")])
        assert [r.action for r in second] == ["allow"]
        status = background.pipeline.status().counterfactual
        assert status is not None and status.pending == 2 and status.dropped == 0
        # The queue (1 batch) is full: a third batch is answered, left unprobed and counted.
        third = background.pipeline.classify([Item("nice day for women")])
        assert [r.action for r in third] == ["allow"]
        status = background.pipeline.status().counterfactual
        assert status is not None and status.dropped == 1
        assert background.registry.get_sample_value("fairgate_counterfactual_dropped_batches_total") == 1

        gated.release.set()
        assert runner.wait(10.0)
    finally:
        gated.release.set()
        runner.close()
    # What the probe measured on the first batch is what the inline probe measured.
    assert gated.calls == [19]  # "hello world" names no group: nothing to score
    value_inline, value_background = inline.registry.get_sample_value, background.registry.get_sample_value
    for kind, model in [("religion", "guard"), ("gender", "guard"), ("gender", "classifier")]:
        labels = {"kind": kind, "model": model}
        assert value_background("fairgate_counterfactual_gap_count", labels) == value_inline(
            "fairgate_counterfactual_gap_count", labels
        )
    status = background.pipeline.status().counterfactual
    assert status is not None and status.pending == 0 and status.sampled == 6  # 5 items + "hello world"


def test_with_the_probe_off_nothing_is_queued_or_counted_as_dropped(dirs: tuple[Path, Path]) -> None:
    off = setup(dirs, probe={"enabled": False})
    submitted: list[object] = []

    class RecordingRunner(BackgroundProbe):
        def submit(self, job: Callable[[], object]) -> bool:
            submitted.append(job)
            return super().submit(job)

    runner = RecordingRunner(max_batches=1)
    off.pipeline.probe_runner = runner
    try:
        for _ in range(3):
            off.pipeline.classify(ITEMS)
        status = off.pipeline.status().counterfactual
        assert status is not None and not status.enabled
        assert submitted == [] and status.pending == 0 and status.dropped == 0
        assert off.registry.get_sample_value("fairgate_counterfactual_dropped_batches_total") == 0
    finally:
        runner.close()


def test_a_background_probe_needs_a_scorer_without_the_deadline(dirs: tuple[Path, Path]) -> None:
    on = setup(dirs, probe={"sample": 1.0})
    with pytest.raises(ValueError, match="needs explain_scorer"):
        GuardedClassifier(
            classifier=on.classifier,  # type: ignore[arg-type]
            guard=on.pipeline.guard,
            probe_runner=BackgroundProbe(max_batches=1),
        )
