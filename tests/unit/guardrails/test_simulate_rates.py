"""`fairgate simulate-rates`: detection and false alarms of the real rate monitor on synthetic streams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fairgate.guardrails.policy import Policy
from fairgate.guardrails.simulate import simulate_methods, simulate_rates, true_impact_ratios
from fairgate.service.cli import main


def small_policy(**rates: object) -> Policy:
    data = Policy.default().model_dump()
    data["rates"].update({"window": {"size": 500}, "min_samples": 50, **rates})
    return Policy.from_mapping(data)


def test_detects_a_disparity_and_reports_first_alert() -> None:
    result = simulate_rates(rates=[0.3, 0.1], n=4000, seed=1, policy=small_policy())
    data = result.to_dict()
    assert data["alerts"] >= 1
    assert data["first_alert"] is not None and 100 <= data["first_alert"] <= 4000
    female = data["groups"]["female"]  # adverse outcome: the 0.3 group is the affected one
    assert female["alerts"] >= 1 and female["first_alert"] == data["first_alert"]
    assert female["true_impact_ratio"] == pytest.approx(1 / 3)
    assert data["groups"]["male"]["alerts"] == 0
    assert data["false_alarms"] == 0


def test_equal_rates_raise_no_false_alarm() -> None:
    result = simulate_rates(rates=[0.2, 0.2], n=20_000, seed=5, policy=small_policy())
    assert result.alerts == 0 and result.false_alarms == 0 and result.first_alert is None
    assert result.checks == 20_000 // 25


def test_false_alarm_is_counted_when_true_ratio_is_within_bound() -> None:
    """A deliberately loose policy (tiny min_samples, low confidence) cries wolf; it is counted."""
    loose = small_policy(min_samples=5, confidence=0.51, checks_per_window=1, window={"size": 20})
    result = simulate_rates(rates=[0.5, 0.5], n=5000, seed=2, policy=loose)
    assert result.false_alarms == result.alerts > 0


def test_shares_and_same_seed_same_result() -> None:
    a = simulate_rates(rates=[0.3, 0.2], shares=[0.9, 0.1], n=3000, seed=4, policy=small_policy())
    b = simulate_rates(rates=[0.3, 0.2], shares=[9, 1], n=3000, seed=4, policy=small_policy())
    assert a.to_dict() == b.to_dict()
    assert 2500 < a.groups[0].requests < 2900


def test_true_ratios() -> None:
    ratios = true_impact_ratios([0.3, 0.2], ["a", "b"], harm="low_rate", reference="highest")
    assert ratios["b"] == (pytest.approx(2 / 3), pytest.approx(0.1))
    assert ratios["a"] == (1.0, 0.0)


def test_input_errors() -> None:
    with pytest.raises(ValueError, match="need at least two groups' rates"):
        simulate_rates(rates=[0.3])
    with pytest.raises(ValueError, match=r"need 2 non-negative shares \(one per rate\)"):
        simulate_rates(rates=[0.3, 0.2], shares=[1.0])
    with pytest.raises(ValueError, match="policy has no rate monitor 'nope'; use one of negative"):
        simulate_rates(rates=[0.3, 0.2], monitor="nope")


def test_cli_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("rates: {window: {size: 400}, min_samples: 50}\n")
    code = main(
        [
            "simulate-rates",
            "--rates",
            "0.3,0.1",
            "--n",
            "3000",
            "--seed",
            "3",
            "--policy",
            str(policy),
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert {"alerts", "first_alert", "groups", "false_alarms"} <= set(data)
    assert data["alerts"] >= 1 and isinstance(data["first_alert"], int)
    assert set(data["groups"]) == {"female", "male"}
    assert data["window"] == {"size": 400}


def test_cli_text_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["simulate-rates", "--rates", "0.2,0.2", "--n", "500"]) == 0
    out = capsys.readouterr().out
    assert "alerts: 0  false alarms: 0" in out
    assert main(["simulate-rates", "--rates", "0.2"]) == 2
    assert "need at least two groups' rates" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("rates: {scope: x}\n")
    assert main(["simulate-rates", "--rates", "0.2,0.3", "--policy", str(bad)]) == 2
    assert "rates.scope = 'x'" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["simulate-rates", "--rates", "a,b"])


def test_cli_runs_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("rates: {window: {size: 400}, min_samples: 50}\n")
    assert (
        main(
            [
                "simulate-rates",
                "--rates",
                "0.3,0.1",
                "--n",
                "2000",
                "--runs",
                "3",
                "--seed",
                "10",
                "--policy",
                str(policy),
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    repeats = data["repeats"]
    assert repeats["runs"] == 3 and repeats["seeds"] == [10, 11, 12]
    assert repeats["first_alert"][0] == data["first_alert"]  # the top level is the first run
    detected = sorted(f for f in repeats["first_alert"] if f is not None)
    assert repeats["detected_runs"] == len(detected)
    assert repeats["first_alert_median"] == detected[(len(detected) + 1) // 2 - 1]
    assert repeats["requests_total"] == 6000


def test_cli_runs_both_methods_side_by_side(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("rates: {window: {size: 400}, min_samples: 50}\n")
    args = ["simulate-rates", "--rates", "0.5,0.1", "--n", "3000", "--runs", "2", "--policy", str(policy)]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["methods"]) == {"window", "sequential"}
    assert data["method"] == "window" and data["first_alert"] == data["methods"]["window"]["first_alert"]
    for method, block in data["methods"].items():
        assert block["method"] == method
        summary = block["repeats"]
        assert summary["method"] == method and summary["runs"] == 2
        assert {"caught_share", "first_alert_median", "first_alert_p90", "false_alarms_per_100k"} <= set(summary)
        assert block["groups"]["female"]["alerts"] >= 1
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[window] 3000 requests" in out and "[sequential] 3000 requests" in out


def test_cli_change_scenario_reports_the_delay(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("rates: {window: {size: 400}, min_samples: 50}\n")
    args = ["simulate-rates", "--rates", "0.2,0.2", "--then", "0.5,0.1", "--change-at", "2000", "--n", "5000"]
    assert main([*args, "--runs", "2", "--batch", "4", "--policy", str(policy), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for block in data["methods"].values():
        assert block["change_at"] == 2000
        assert block["detection_delay"] is not None and 0 < block["detection_delay"] <= 3000
        assert block["groups"]["female"]["then_breaches_bound"] is True
        summary = block["repeats"]
        assert summary["delay_caught_share"] == 1.0 and summary["delay_median"] is not None
    assert main([*args, "--method", "sequential", "--policy", str(policy)]) == 0
    out = capsys.readouterr().out
    assert "[sequential]" in out and "[window]" not in out and "detection delay after 2000:" in out
    assert main(["simulate-rates", "--rates", "0.2,0.2", "--then", "0.3,0.2"]) == 2
    assert "--then and --change-at go together" in capsys.readouterr().out
    assert main(["simulate-rates", "--rates", "0.2,0.2", "--then", "0.3", "--change-at", "5"]) == 2
    assert "need 2 rates in 0..1 after the change" in capsys.readouterr().out


def test_five_groups_unequal_shares_and_batches() -> None:
    results = simulate_methods(
        rates=[0.5, 0.2, 0.2, 0.2, 0.2],
        shares=[0.1, 0.3, 0.2, 0.2, 0.2],
        n=6000,
        seed=3,
        batch=8,
        policy=small_policy(),
    )
    for method, result in results.items():
        assert result.method == method
        assert len(result.groups) == 5 and result.groups[0].share == pytest.approx(0.1)
        assert result.first_alert is not None and result.false_alarms == 0, method
        assert result.groups[0].alerts >= 1
