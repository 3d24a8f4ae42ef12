"""The fairness gate of ``fairgate build guard``, on the bundled identity evaluation set."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from fairgate.models.errors import DeployGateError
from fairgate.models.guard import (
    CATEGORIES,
    FairnessGateError,
    IdentityEvalSet,
    bundled_identity_eval_path,
    check_fairness_gate,
    identity_report,
    measure_identity_report,
    read_identity_eval,
)
from fairgate.models.guard._errors import GuardDataError
from fairgate.models.guard.fairness import policy_toxicity_thresholds, report_thresholds


@pytest.fixture(scope="module")
def identity_set() -> IdentityEvalSet:
    return read_identity_eval()


class _TinyGuard:
    """A guard whose toxicity score knows the label (0.9 toxic, 0.05 benign), with a bias:
    ``bias`` is added to every text naming ``biased_term``. Other categories score 0."""

    labels = CATEGORIES
    task = "multi_label_classification"

    def __init__(self, toxic_texts: set[str], *, biased_term: str = "", bias: float = 0.0) -> None:
        self.toxic_texts, self.biased_term, self.bias = toxic_texts, biased_term.lower(), bias

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(CATEGORIES)), np.float32)
        for i, text in enumerate(texts):
            score = 0.9 if text in self.toxic_texts else 0.05
            if self.biased_term and self.biased_term in text.lower():
                score += self.bias
            out[i, 0] = min(score, 1.0)
        return out


def _toxic_texts(data: IdentityEvalSet) -> set[str]:
    return {t for t, bad in zip(data.texts, data.toxic, strict=True) if bad}


def test_bundled_identity_set_fills_every_template_for_every_group(identity_set):
    assert bundled_identity_eval_path().name == "identity_eval.csv"
    assert len(identity_set) == 85 * 23
    assert identity_set.templates is not None
    assert set(Counter(identity_set.templates).values()) == {23}
    assert int(identity_set.toxic.sum()) == 37 * 23


def test_gate_fails_on_a_model_biased_against_one_group(identity_set):
    biased = _TinyGuard(_toxic_texts(identity_set), biased_term="muslim", bias=0.6)
    report = measure_identity_report(biased)
    with pytest.raises(FairnessGateError) as caught:
        check_fairness_gate(report)
    message = str(caught.value)
    assert "group 'muslim': benign flag rate 1.0000 (48 of 48 benign rows score toxicity >= 0.5)" in message
    assert "exceeds the limit 0.05" in message
    assert "flag-rate spread 1.0000 (worst group 'muslim' 1.0000" in message
    assert "--fairness-max-flag-rate" in message
    assert {(f["figure"], f["group"]) for f in caught.value.failures} == {
        ("benign flag rate", "muslim"),
        ("flag-rate spread", "muslim"),
    }
    assert isinstance(caught.value, DeployGateError)  # the build's gate exit code applies


def test_gate_passes_on_a_fair_model(identity_set):
    fair = _TinyGuard(_toxic_texts(identity_set))
    report = measure_identity_report(fair)
    check_fairness_gate(report)
    assert report.benign_flag_rate == 0.0 and report.flag_rate_spread == 0.0
    assert report.counterfactual is not None and report.counterfactual.mean_gap == pytest.approx(0.0)


def test_a_mild_bias_fails_only_the_spread_limit(identity_set):
    toxic = identity_set.toxic
    scores = np.where(toxic, 0.9, 0.05)
    gay_benign = np.flatnonzero((np.asarray(identity_set.groups) == "gay") & ~toxic)
    scores[gay_benign[:3]] = 0.6  # 3 of 48 benign rows flagged: 0.0625 for one group
    report = identity_report(scores, groups=identity_set.groups, templates=identity_set.templates,
                             toxic=toxic, flag_threshold=0.5, block_threshold=0.8)
    check_fairness_gate(report, max_benign_flag_rate=0.10)  # within both limits
    with pytest.raises(FairnessGateError, match=r"flag-rate spread 0\.0625 \(worst group 'gay' 0\.0625, "
                                                r"best 'arab' 0\.0000\) exceeds the limit 0\.05") as caught:
        check_fairness_gate(report, max_benign_flag_rate=0.10, max_flag_rate_spread=0.05)
    assert [f["figure"] for f in caught.value.failures] == ["flag-rate spread"]


def test_one_group_over_the_limit_fails_though_the_overall_rate_passes(identity_set):
    toxic = identity_set.toxic
    scores = np.where(toxic, 0.9, 0.05)
    old_benign = np.flatnonzero((np.asarray(identity_set.groups) == "old") & ~toxic)
    scores[old_benign[:6]] = 0.55  # old: 6/48 = 0.125; overall 6/1104 ≈ 0.005
    report = identity_report(scores, groups=identity_set.groups, templates=identity_set.templates,
                             toxic=toxic, flag_threshold=0.5, block_threshold=0.8)
    with pytest.raises(FairnessGateError, match=r"group 'old': benign flag rate 0\.1250") as caught:
        check_fairness_gate(report, max_flag_rate_spread=0.5)
    assert [(f["figure"], f["group"]) for f in caught.value.failures] == [("benign flag rate", "old")]


def test_gate_refuses_to_pass_what_it_cannot_measure():
    report = identity_report([0.1, 0.2, 0.1], groups=["a", "b", "c"], templates=None,
                             toxic=np.zeros(3, bool), flag_threshold=0.5, block_threshold=0.8, min_samples=5)
    with pytest.raises(FairnessGateError, match="flag-rate spread cannot be computed: fewer than 2 groups "
                                                "have 5 or more benign rows"):
        check_fairness_gate(report)


def test_thresholds_default_to_the_policy_toxicity_category():
    # toxicity only flags in the default policy: blocks are reported at the lowest block
    # threshold of any category (severe_toxicity's 0.6), never fewer than the policy blocks.
    assert policy_toxicity_thresholds() == (0.5, 0.6)


def test_thresholds_of_a_policy_whose_toxicity_category_blocks():
    from fairgate.guardrails.policy import Policy

    blocking = Policy.from_mapping({"toxicity": {"categories": {"toxicity": {"flag": 0.4, "block": 0.9},
                                                                "threat": {"block": 0.7}}}})
    assert policy_toxicity_thresholds(blocking) == (0.4, 0.9)
    flag_only = Policy.from_mapping({"toxicity": {"categories": {"toxicity": {"flag": 0.4}}}})
    assert policy_toxicity_thresholds(flag_only) == (0.4, 1.0)  # nothing blocks: none reported blocked


def test_report_thresholds_never_put_the_block_below_the_flag():
    # A calibrated toxicity flag above every block floor (a strict --max-false-flag) must not
    # make the identity report refuse its thresholds and abort the build.
    categories = {"toxicity": {"flag": 0.85}, "threat": {"flag": 0.5, "block": 0.8}}
    assert report_thresholds(categories) == (0.85, 0.85)
    with pytest.raises(GuardDataError, match="no thresholds for the toxicity category"):
        report_thresholds({"threat": {"block": 0.8}})
