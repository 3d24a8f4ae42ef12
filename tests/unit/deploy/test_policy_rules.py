"""The policy mirror in Prometheus matches the bundled policy, and follows a custom one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.setup.deploy_files import PROMETHEUS, load_script


@pytest.fixture(scope="module")
def policy_rules():
    return load_script(PROMETHEUS / "policy_rules.py")


def test_committed_mirror_matches_the_default_policy(policy_rules) -> None:
    from fairgate.guardrails.policy import Policy

    expected = policy_rules.render(Policy.default(), source="guardrails/data/default_policy.yaml")
    committed = (PROMETHEUS / "rules" / "fairgate-policy.yml").read_text(encoding="utf-8")
    assert committed == expected, "run: .venv/bin/python deploy/prometheus/policy_rules.py"


def _series(rules_text: str) -> list[tuple[str, str, dict[str, str]]]:
    doc = yaml.safe_load(rules_text)
    return [(r["record"], r["expr"], r.get("labels", {})) for g in doc["groups"] for r in g["rules"]]


def test_custom_policy_becomes_constant_series(policy_rules, promtool: Path, tmp_path: Path) -> None:
    from fairgate.guardrails.policy import Policy

    policy = Policy.from_mapping(
        {
            "version": "t1",
            "rates": {
                "monitors": [
                    {"name": "approved", "source": "label", "outcome": "approve", "harm": "low_rate"},
                    {"name": "guard_flag", "source": "guard", "outcome": "flag"},
                ],
                "impact_ratio": {"min": 0.9},
                "min_samples": 40,
                "exclude": ["none", "other"],
            },
        }
    )
    text = policy_rules.render(policy, source="test")
    series = _series(text)
    assert (
        "fairgate:policy_monitor",
        "vector(1)",
        {"monitor": "approved", "source": "label", "harm": "low_rate"},
    ) in series
    monitored = [labels for name, _, labels in series if name == "fairgate:policy_monitored_outcome"]
    # guard_flag counts flagged and blocked items, like guardrails.guard does.
    assert monitored == [
        {"monitor": "approved", "outcome": "approve"},
        {"monitor": "guard_flag", "outcome": "flag"},
        {"monitor": "guard_flag", "outcome": "block"},
    ]
    assert ("fairgate:policy_impact_ratio_min", "vector(0.9)", {}) in series
    assert ("fairgate:policy_min_samples", "vector(40)", {}) in series
    excluded = [labels["group"] for name, _, labels in series if name == "fairgate:policy_excluded_group"]
    assert excluded == ["none", "other"]
    out = tmp_path / "policy.yml"
    out.write_text(text)
    done = subprocess.run([str(promtool), "check", "rules", str(out)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_named_reference_is_refused_with_the_way_out(policy_rules) -> None:
    from fairgate.guardrails.policy import Policy

    policy = Policy.from_mapping({"rates": {"reference": "female"}})
    with pytest.raises(policy_rules.PolicyRulesError, match="rates.reference 'female'.*use reference: highest"):
        policy_rules.policy_rule_groups(policy)


def test_check_flag_reports_a_stale_file(policy_rules, tmp_path: Path, capsys) -> None:
    stale = tmp_path / "fairgate-policy.yml"
    stale.write_text("groups: []\n")
    assert policy_rules.main(["--output", str(stale), "--check"]) == 1
    assert "is stale" in capsys.readouterr().err
    assert policy_rules.main(["--output", str(stale)]) == 0
    assert policy_rules.main(["--output", str(stale), "--check"]) == 0
