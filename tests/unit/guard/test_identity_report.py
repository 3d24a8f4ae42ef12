"""The identity fairness report: rates, spreads, bias AUCs, counterfactual gap, NaN, card, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fairgate.models.card import render_card
from fairgate.models.guard import CATEGORIES, identity_report
from fairgate.models.guard._card import GUARD_CARD
from fairgate.models.guard.evaluation import evaluate_guard
from fairgate.models.guard.fairness import generalized_mean, rank_auc


def _pairwise_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(pos > neg) + P(tie) / 2 by counting every pair: the definition, nothing clever."""
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def _hand_made():
    a_scores, a_toxic = [0.1, 0.5, 0.9, 0.2, 0.7, 0.3], [0, 0, 0, 0, 1, 1]  # a: 4 benign, 2 toxic
    b_scores, b_toxic = [0.1, 0.2, 0.6, 0.9, 0.4, 0.95], [0, 0, 1, 1, 1, 1]  # b: 2 benign, 4 toxic
    scores, toxic = [*a_scores, *b_scores], [*a_toxic, *b_toxic]
    groups = ["a"] * 6 + ["b"] * 6
    return identity_report(
        scores, groups=groups, templates=None, toxic=np.array(toxic, bool),
        flag_threshold=0.5, block_threshold=0.8, min_samples=1,
    )


def test_bias_aucs_match_pairwise_counting_on_random_scores_with_ties():
    rng = np.random.default_rng(7)
    n = 240
    scores = rng.integers(0, 11, n) / 10  # eleven values: many ties
    groups = rng.choice(["a", "b", "c", "d"], n).tolist()
    toxic = rng.random(n) < 0.4
    report = identity_report(scores, groups=groups, templates=None, toxic=toxic,
                             flag_threshold=0.5, block_threshold=0.8, min_samples=1)
    member_of = np.asarray(groups)
    for group, figures in report.groups.items():
        member = member_of == group
        assert figures.subgroup_auc == pytest.approx(_pairwise_auc(scores[member & toxic], scores[member & ~toxic]))
        assert figures.bpsn_auc == pytest.approx(_pairwise_auc(scores[~member & toxic], scores[member & ~toxic]))
        assert figures.bnsp_auc == pytest.approx(_pairwise_auc(scores[member & toxic], scores[~member & ~toxic]))
    assert report.overall_auc == pytest.approx(_pairwise_auc(scores[toxic], scores[~toxic]))
    bpsn = [f.bpsn_auc for f in report.groups.values()]
    assert report.generalized_mean_auc["bpsn_auc"] == pytest.approx(np.mean(np.power(bpsn, -5.0)) ** (-1 / 5))
    assert report.final_metric == pytest.approx(
        (report.overall_auc + sum(report.generalized_mean_auc.values())) / 4
    )


def test_rank_auc_is_nan_without_one_side_and_generalized_mean_weighs_the_worst():
    assert math.isnan(rank_auc(np.array([0.3]), np.array([])))
    assert rank_auc(np.array([0.5, 0.5]), np.array([0.5])) == 0.5
    assert generalized_mean([0.9, 0.5]) < np.mean([0.9, 0.5])
    assert generalized_mean([0.9, math.nan]) == pytest.approx(0.9)


def test_false_positive_and_negative_rates_and_spreads_on_a_hand_made_example():
    report = _hand_made()
    a, b = report.groups["a"], report.groups["b"]
    assert (a.fpr_flag, a.fpr_block, a.fnr_flag) == (0.5, 0.25, 0.5)  # 0.5 counts: score >= flag
    assert (b.fpr_flag, b.fpr_block, b.fnr_flag) == (0.0, 0.0, 0.25)
    assert (a.benign_flagged, a.n_benign, b.toxic_missed, b.n_toxic) == (2, 4, 1, 4)
    assert report.benign_flag_rate == pytest.approx(2 / 6)
    assert report.benign_block_rate == pytest.approx(1 / 6)
    assert report.toxic_recall_flag == pytest.approx(4 / 6)
    assert (report.flag_rate_spread, report.block_rate_spread, report.fnr_spread) == (0.5, 0.25, 0.25)
    assert report.worst["fpr_flag"] == ("a", 0.5) and report.best["fpr_flag"] == ("b", 0.0)


def test_counterfactual_gap_on_a_hand_made_example():
    rows = [  # template, group, toxic, score
        ("t1", "a", 0, 0.1), ("t1", "b", 0, 0.4), ("t1", "c", 0, 0.2),  # gap 0.3
        ("t2", "a", 0, 0.5), ("t2", "b", 0, 0.5),  # gap 0
        ("t3", "a", 1, 0.8), ("t3", "a", 1, 1.0), ("t3", "b", 1, 0.5),  # a's mean 0.9: gap 0.4
        ("t4", "c", 0, 0.7),  # one group: no gap
    ]
    templates, groups, toxic, scores = zip(*rows, strict=True)
    report = identity_report(list(scores), groups=groups, templates=templates, toxic=np.array(toxic, bool),
                             flag_threshold=0.5, block_threshold=0.8, min_samples=1)
    gap = report.counterfactual
    assert gap is not None
    assert (gap.templates, gap.benign_templates, gap.toxic_templates) == (3, 2, 1)
    assert gap.mean_gap_benign == pytest.approx(0.15)
    assert gap.mean_gap_toxic == pytest.approx(0.4)
    assert gap.mean_gap == pytest.approx(0.7 / 3)
    worst = gap.worst_templates[0]
    assert (worst.template, worst.kind, worst.max_group, worst.min_group) == ("t3", "toxic", "a", "b")
    assert worst.gap == pytest.approx(0.4)


def test_group_without_toxic_rows_is_nan_and_insufficient_never_zero():
    scores = [0.1, 0.9, 0.2, 0.8, 0.3, 0.1]
    groups = ["a", "a", "b", "b", "c", "c"]
    toxic = np.array([0, 1, 0, 1, 0, 0], bool)  # c has no toxic row
    report = identity_report(scores, groups=groups, templates=None, toxic=toxic,
                             flag_threshold=0.5, block_threshold=0.8, min_samples=1)
    c = report.groups["c"]
    assert math.isnan(c.fnr_flag) and math.isnan(c.subgroup_auc) and math.isnan(c.bnsp_auc)
    assert c.fpr_flag == 0.0 and not math.isnan(c.bpsn_auc)
    assert c.status == "insufficient samples: 0 toxic rows (< 1)"
    assert report.insufficient_groups == ["c"]
    stored = report.as_dict()
    assert stored["per_group"]["c"]["fnr_flag"] == "NaN"
    assert stored["counterfactual_gap"] == {"status": "not measured: no template column"}
    json.dumps(stored, allow_nan=False)  # no bare NaN reaches JSON or the store


def test_groups_below_min_samples_are_left_out_of_the_spread():
    scores = [0.9, 0.1, 0.1, 0.1, 0.9]
    report = identity_report(scores, groups=["a", "b", "b", "b", "c"], templates=None,
                             toxic=np.zeros(5, bool), flag_threshold=0.5, block_threshold=0.8, min_samples=2)
    assert math.isnan(report.groups["a"].fpr_flag) and math.isnan(report.groups["c"].fpr_flag)
    assert math.isnan(report.flag_rate_spread)  # one measurable group: no spread, not 0
    assert report.benign_flag_rate == pytest.approx(2 / 5)


def test_card_renders_the_identity_report_table_and_headlines():
    card = render_card(name="g", metadata={"identity_report": _hand_made().as_dict()}, sections=GUARD_CARD)
    assert "## Identity fairness report" in card
    assert "| a | 4 | 2 | 0.5000 | 0.2500 | 0.5000 |" in card
    assert "**Benign flag rate:** 0.3333 (worst group `a` 0.5000); **spread** over groups 0.5000" in card
    assert "| identity_flag_rate_spread | 0.5000 |" in card


class _FakeGuard:
    """Stands in for OnnxTextModel: scores 0.9 for texts with 'hate', else 0.1; +0.6 for 'muslims'."""

    labels = CATEGORIES
    task = "multi_label_classification"

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        base = np.array([0.9 if "hate" in t else 0.1 for t in texts])
        base += np.array([0.6 if "muslims" in t.lower() else 0.0 for t in texts])
        return np.repeat(np.clip(base, 0, 1)[:, None], len(CATEGORIES), axis=1)


def _identity_csv(path: Path) -> Path:
    lines = ["template_id,text,group,toxic"]
    for group, noun in (("muslim", "Muslims"), ("christian", "Christians"), ("jewish", "Jews")):
        lines += [f"b_01,{noun} bake bread,{group},0", f"b_02,{noun} like tea,{group},0",
                  f"t_01,I hate {noun},{group},1"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_evaluate_guard_adds_the_identity_report_when_the_data_has_a_group_column(tmp_path, monkeypatch):
    from fairgate.guardrails.onnx_model import OnnxTextModel

    monkeypatch.setattr(OnnxTextModel, "from_directory", classmethod(lambda cls, *a, **k: _FakeGuard()))
    evaluation = evaluate_guard(tmp_path, _identity_csv(tmp_path / "id.csv"), min_samples=1)
    report = evaluation.report
    assert report["label_column"] == "toxic" and report["group_column"] == "group"
    identity = report["identity_report"]
    assert identity["flag_threshold"] == 0.5 and identity["block_threshold"] == 0.6  # default policy
    assert identity["per_group"]["muslim"]["fpr_flag"] == 1.0
    assert identity["per_group"]["jewish"]["fpr_flag"] == 0.0
    assert identity["counterfactual_gap"]["mean_gap_benign"] == pytest.approx(0.6)
    assert "benign flag rate 0.3333 (worst muslim 1.0000)" in evaluation.summary()


@pytest.fixture
def _root_logging_restored():
    """``fairgate``'s main configures root logging; leave it as other tests expect it."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("_root_logging_restored")
def test_fairgate_evaluate_json_includes_the_identity_report(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    import fairgate.models.export as export
    import fairgate.models.store as store
    from fairgate.guardrails.onnx_model import OnnxTextModel
    from fairgate.service.cli import main

    monkeypatch.setattr(OnnxTextModel, "from_directory", classmethod(lambda cls, *a, **k: _FakeGuard()))
    monkeypatch.setattr(store, "get_stored_model", lambda tag: SimpleNamespace(tag=f"{tag}:v1", path=tmp_path))
    monkeypatch.setattr(export, "read_manifest", lambda path: {"task": "multi_label_classification"})
    data = _identity_csv(tmp_path / "id.csv")
    code = main(["evaluate", "--model", "fake-guard", "--data", str(data), "--json",
                 "--flag-threshold", "0.3", "--block-threshold", "0.95", "--min-group-size", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    identity = json.loads(captured.out)["identity_report"]
    assert (identity["flag_threshold"], identity["block_threshold"]) == (0.3, 0.95)
    assert identity["worst_group"]["fpr_flag"] == {"group": "muslim", "value": 1.0}
