"""loadtests.domain_report: the figures read back from the service's answers (no server)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loadtests import domain_report

METRICS = """\
# HELP fairgate_domain_score Per classified item: distance over the quantile.
# TYPE fairgate_domain_score histogram
fairgate_domain_score_bucket{le="0.5"} 2.0
fairgate_domain_score_bucket{le="1.0"} 6.0
fairgate_domain_score_bucket{le="2.0"} 9.0
fairgate_domain_score_bucket{le="+Inf"} 10.0
fairgate_domain_score_count 10.0
fairgate_domain_score_sum 9.5
# HELP fairgate_domain_alert_active 1 while the domain-shift alert is active.
# TYPE fairgate_domain_alert_active gauge
fairgate_domain_alert_active 1.0
# HELP fairgate_domain_out_of_domain_share Share at the last check.
# TYPE fairgate_domain_out_of_domain_share gauge
fairgate_domain_out_of_domain_share 0.4
"""


def test_domain_status_reads_the_guardrails_section_and_names_a_missing_one() -> None:
    status = {"guardrails": {"domain": {"enabled": True, "n": 64, "alert": False}}}
    assert domain_report.domain_status(status) == {"enabled": True, "n": 64, "alert": False}
    with pytest.raises(ValueError, match="no guardrails.domain"):
        domain_report.domain_status({"guardrails": {"monitors": []}})


def test_share_above_counts_only_scored_items() -> None:
    figures = domain_report.share_above([0.5, None, 1.0, 1.5, math.nan, 3.0])
    assert figures == {"scored": 4, "above": 2, "share": 0.5, "median_score": 1.5}
    assert domain_report.share_above([None])["share"] is None


def test_first_alert_is_the_first_request_whose_status_shows_one() -> None:
    trace = [
        {"sent": 32, "scored": 30, "alert": False, "alerts_raised": 0, "n": 30},
        {"sent": 64, "scored": 62, "alert": False, "alerts_raised": 0, "n": 62},
        {"sent": 96, "scored": 94, "alert": True, "alerts_raised": 1, "n": 94, "share": 0.3, "share_lower": 0.2},
        {"sent": 128, "scored": 126, "alert": True, "alerts_raised": 1, "n": 126},
    ]
    assert domain_report.first_alert(trace) == {
        "request": 3, "items": 96, "scored": 94, "n": 94, "share": 0.3, "share_lower": 0.2,
    }
    # Raised and already cleared by the time of the poll: alerts_raised still tells.
    cleared = [{"sent": 32, "scored": 32, "alert": False, "alerts_raised": 1, "n": 32}]
    assert domain_report.first_alert(cleared) == {
        "request": 1, "items": 32, "scored": 32, "n": 32, "share": None, "share_lower": None,
    }
    assert domain_report.first_alert(trace[:2]) is None


def test_domain_metrics_gives_the_gauges_and_the_count_above_one() -> None:
    figures = domain_report.domain_metrics(METRICS)
    assert figures["fairgate_domain_alert_active"] == 1.0
    assert figures["fairgate_domain_out_of_domain_share"] == 0.4
    assert figures["fairgate_domain_score_count"] == 10.0
    assert figures["scores_above_1"] == 4.0


def test_davidson_sample_is_seeded_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "labeled_data.csv"
    rows = "\n".join(f"{i},3,0,0,3,2,tweet number {i}" for i in range(50))
    path.write_text(",count,hate_speech,offensive_language,neither,class,tweet\n" + rows + "\n", encoding="utf-8")
    first = domain_report.read_davidson(path, sample=10, seed=3)
    assert len(first) == 10 and len(set(first)) == 10
    assert first == domain_report.read_davidson(path, sample=10, seed=3)
    assert first != domain_report.read_davidson(path, sample=10, seed=4)
    assert len(domain_report.read_davidson(path, sample=500, seed=3)) == 50
