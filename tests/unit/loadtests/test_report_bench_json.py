"""bench.json: the headline keys, the ratios against the targets, the printed table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests import bench
from loadtests._report import REQUIRED_KEYS, check_report, format_table, headline


def test_headline_computes_both_ratios_and_checks_targets() -> None:
    figures = headline(floor_texts_per_s=200.0, fairgate_rps=150.0, usual_rps=20.0, p99_ms_half_load=35.0)
    assert figures["fairgate_over_floor"] == 0.75
    assert figures["fairgate_over_usual"] == 7.5
    assert figures["p99_ms_half_load"] == 35.0
    assert {k: v["met"] for k, v in figures["targets"].items()} == {
        "fairgate_over_floor": True,
        "fairgate_over_usual": True,
        "p99_ms_half_load": True,
    }


def test_headline_marks_missed_targets() -> None:
    figures = headline(floor_texts_per_s=200.0, fairgate_rps=100.0, usual_rps=25.0, p99_ms_half_load=80.0)
    assert figures["fairgate_over_floor"] == 0.5
    assert [v["met"] for v in figures["targets"].values()] == [False, False, False]


def test_a_missing_phase_gives_none_not_zero() -> None:
    figures = headline(floor_texts_per_s=None, fairgate_rps=100.0, usual_rps=0.0, p99_ms_half_load=None)
    assert figures["fairgate_over_floor"] is None
    assert figures["fairgate_over_usual"] is None
    assert figures["targets"]["p99_ms_half_load"]["met"] is None


def test_check_report_names_the_missing_key() -> None:
    report = {"schema": "x", "floor": {}, "fairgate": {}, "usual": {}, "fairgate_over_floor": 1.0}
    with pytest.raises(KeyError, match="fairgate_over_usual"):
        check_report(report)


def test_table_shows_ratios_and_verdicts() -> None:
    report = {
        **headline(floor_texts_per_s=200.0, fairgate_rps=150.0, usual_rps=50.0, p99_ms_half_load=61.5),
        "floor": {"variant": "batch 16", "intra_op_threads": 1},
        "fairgate": {
            "saturation": {"p50_ms": 80.0, "errors": 0},
            "half_load": {"offered_rps": 75.0, "p99_ms": 61.5},
        },
        "usual": {"saturation": {"p50_ms": 900.0, "errors": 0}},
    }
    table = format_table(report)
    assert "fairgate_over_floor" in table and "0.75" in table
    assert "fairgate_over_usual" in table and "3" in table
    assert "p99_ms_half_load" in table and "61.5" in table and "MISSED" in table


def test_bench_without_models_still_writes_every_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    code = bench.main(
        [
            "--classifier-tag",
            "no-such-model",
            "--skip",
            "usual",
            "--out",
            str(out),
            "--log-dir",
            str(tmp_path),
        ]
    )
    report = json.loads(out.read_text())
    assert code == 1
    assert "no-such-model" in report["error"] and "make models" in report["error"]
    for key in REQUIRED_KEYS:
        assert key in report and report[key] is None
    assert report["usual"] == {"skipped": True}
    assert "wrote" in capsys.readouterr().out


def test_cpu_cross_check_ratios_compare_cpu_per_request() -> None:
    figures = headline(
        floor_texts_per_s=1.0,
        fairgate_rps=1.0,
        usual_rps=1.0,
        p99_ms_half_load=1.0,
        fairgate_cpu_ms_per_request=8.0,
        usual_cpu_ms_per_request=400.0,
        floor_cpu_ms_per_text=6.0,
    )
    assert figures["cpu_cross_check"]["fairgate_over_usual_cpu"] == 50.0
    assert figures["cpu_cross_check"]["fairgate_over_floor_cpu"] == 0.75


def test_floor_variants_parse_sizes_and_length_buckets() -> None:
    assert bench._floor_variants("8, 32,32/8") == [(8, None), (32, None), (32, 8)]


def test_deadline_bounds_each_phase_by_what_is_left() -> None:
    now = [0.0]
    deadline = bench.Deadline(100.0, clock=lambda: now[0])
    assert deadline.bounded(30.0) == 30.0
    now[0] = 80.0
    assert deadline.bounded(30.0) == 20.0
    assert deadline.bounded(30.0, reserve_s=15.0) == 5.0
    now[0] = 120.0
    assert deadline.bounded(30.0) == 0.0


def test_floor_thread_counts_map_zero_to_the_runtime_default() -> None:
    assert bench._thread_counts("1, 0,2") == [1, None, 2]
