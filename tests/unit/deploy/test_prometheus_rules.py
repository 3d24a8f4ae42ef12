"""The Prometheus config and rules pass promtool, and their unit tests pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.setup.deploy_files import PROMETHEUS, RULE_FILES, RULE_TESTS


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def test_rule_files_pass_promtool_check_rules(promtool: Path) -> None:
    names = {p.name for p in RULE_FILES}
    assert names == {"fairgate-policy.yml", "fairgate-recording.yml", "fairgate-alerts.yml"}
    done = _run([str(promtool), "check", "rules", *map(str, RULE_FILES)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULE_FILES)


def test_prometheus_config_passes_promtool_check_config(promtool: Path) -> None:
    # check config also loads every rule file the config's glob names.
    done = _run([str(promtool), "check", "config", str(PROMETHEUS / "prometheus.yml")])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 rule files found" in done.stdout, done.stdout


def test_rule_unit_tests_pass_promtool_test_rules(promtool: Path) -> None:
    assert {p.name for p in RULE_TESTS} == {"alerts_test.yml", "recording_test.yml"}
    done = _run([str(promtool), "test", "rules", *map(str, RULE_TESTS)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((PROMETHEUS / "rules" / "fairgate-alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert {
        "FairgateImpactRatioLow",
        "FairgateBlockRateHigh",
        "FairgateGuardErrors",
        "FairgateLatencyP99High",
        "FairgateNoTraffic",
    } <= alerts
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in yaml.safe_load((PROMETHEUS / "tests" / "alerts_test.yml").read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    assert fired == alerts, f"alerts never tested firing: {alerts - fired}"
    assert quiet == alerts, f"alerts never tested quiet: {alerts - quiet}"


def test_a_broken_rule_is_caught(promtool: Path, tmp_path: Path) -> None:
    # The checks above can fail: a misspelt function is rejected by promtool.
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "groups:\n  - name: x\n    rules:\n      - record: fairgate:x\n        expr: rat(fairgate_decisions_total[5m])\n"
    )
    done = _run([str(promtool), "check", "rules", str(bad)])
    assert done.returncode != 0
    assert "rat" in done.stdout + done.stderr


def test_local_config_differs_from_the_compose_one_only_in_the_target(promtool: Path) -> None:
    compose = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    local = yaml.safe_load((PROMETHEUS / "prometheus.local.yml").read_text())
    assert local["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:3000"]}]
    local["scrape_configs"][0]["static_configs"] = compose["scrape_configs"][0]["static_configs"]
    assert local == compose
    done = _run([str(promtool), "check", "config", str(PROMETHEUS / "prometheus.local.yml")])
    assert done.returncode == 0, done.stdout + done.stderr
