"""Every policy mistake is a PolicyError naming the key, the bad value and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fairgate.guardrails.policy import Policy, PolicyError, default_policy_path

CASES: list[tuple[dict[str, Any], str]] = [
    (
        {"groups": {"source": "header"}},
        "groups.source = 'header': should be 'request', 'identity_terms' or 'both'; use one of the values listed",
    ),
    (
        {"groups": {"allowed": ["female", "other"]}},
        "groups.allowed: 'other' is reserved (items outside the list count as 'other', items without a group "
        "as 'none'); remove it from groups.allowed",
    ),
    (
        {"groups": {"allowed": ["Female Folk"]}},
        "groups.allowed: 'female folk' is not a valid group name; use lowercase letters, digits and '_'",
    ),
    (
        {"groups": {"allowed": ["female", "female"]}},
        "groups.allowed: lists a group twice; list each group once",
    ),
    (
        {"toxicity": {"categories": {"toxicity": {"flag": 0.9, "block": 0.5}}}},
        "toxicity.categories.toxicity: flag 0.9 is above block 0.5; set flag <= block",
    ),
    (
        {"toxicity": {"categories": {"rudeness": {"flag": 0.5}}}},
        "toxicity.categories: unknown category 'rudeness'; use one of toxicity, severe_toxicity, obscene, "
        "threat, insult, identity_attack",
    ),
    (
        {"toxicity": {"categories": {"toxicity": {"flag": 1.5}}}},
        "toxicity.categories.toxicity.flag = 1.5: should be less than or equal to 1; lower it",
    ),
    (
        {"toxicity": {"categories": {"toxicity": {}}}},
        "toxicity.categories.toxicity: needs at least one of flag or block; set e.g. {flag: 0.5, block: 0.8}",
    ),
    (
        {"toxicity": {"on_error": "ignore"}},
        "toxicity.on_error = 'ignore': should be 'allow', 'flag' or 'block'; use one of the values listed",
    ),
    (
        {"rates": {"window": {}}},
        "rates.window: needs size (outcomes) or seconds; set e.g. {size: 2000} or {seconds: 3600}",
    ),
    (
        {"rates": {"window": {"size": 0}}},
        "rates.window.size = 0: should be greater than or equal to 1; raise it",
    ),
    (
        {"rates": {"windw": {"size": 10}}},
        "rates.windw: unknown key (value {'size': 10}); remove it or check its spelling",
    ),
    (
        {"rates": {"impact_ratio": None, "parity_difference": None}},
        "rates: has neither impact_ratio nor parity_difference; set impact_ratio: {min: 0.8}",
    ),
    ({"rates": {"confidence": 1.2}}, "rates.confidence = 1.2: should be less than 1; lower it"),
    (
        {"rates": {"min_samples": "many"}},
        "rates.min_samples = 'many': should be a valid integer, unable to parse string as an integer; "
        "use a whole number",
    ),
    (
        {"rates": {"action": "warn"}},
        "rates.action = 'warn': should be 'flag' or 'block'; use one of the values listed",
    ),
    (
        {"rates": {"scope": "everyone"}},
        "rates.scope = 'everyone': should be 'affected_group' or 'all'; use one of the values listed",
    ),
    (
        {"rates": {"on_error": "retry"}},
        "rates.on_error = 'retry': should be 'allow', 'flag' or 'block'; use one of the values listed",
    ),
    (
        {"rates": {"reference": "martian"}},
        "rates.reference 'martian' is not in groups.allowed; use 'highest' or one of the allowed groups",
    ),
    (
        {"rates": {"monitors": [{"name": "g", "source": "guard", "outcome": "negative"}]}},
        "rates.monitors.0: outcome 'negative' is not a guard action; with source: guard use flag or block",
    ),
    (
        {"rates": {"monitors": [{"name": "a", "outcome": "x"}, {"name": "a", "outcome": "y"}]}},
        "rates: monitors repeat a name (a, a); give each a unique name",
    ),
    ({"rates": {"monitors": [{"name": "a"}]}}, "rates.monitors.0.outcome: required key is missing; add it"),
    (
        {"rates": {"monitors": [{"name": "a", "outcome": "x", "harm": "bad"}]}},
        "rates.monitors.0.harm = 'bad': should be 'low_rate' or 'high_rate'; use one of the values listed",
    ),
    (
        {"rates": {"hysteresis": -0.1}},
        "rates.hysteresis = -0.1: should be greater than or equal to 0; raise it",
    ),
    (
        {"enabled": "maybe"},
        "enabled = 'maybe': should be a valid boolean, unable to interpret input; use true or false",
    ),
    ({"hysteresis": 0.1}, "hysteresis: unknown key (value 0.1); remove it or check its spelling"),
]


@pytest.mark.parametrize(
    ("data", "expected"), CASES, ids=[c[1].split(":")[0] + str(i) for i, c in enumerate(CASES)]
)
def test_policy_error_names_key_value_and_fix(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_mapping(data, source="p.yaml")
    text = str(info.value)
    assert text.startswith("p.yaml: invalid policy\n")
    assert expected in text, text


def test_from_yaml_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"policy file .*nope.yaml not found; pass an existing file"):
        Policy.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups: [unclosed\n")
    with pytest.raises(
        PolicyError,
        match=(
            r"bad.yaml: not valid YAML at line 2, column 1 "
            r"\(expected ',' or '\]', but got '<stream end>'\); fix the syntax"
        ),
    ):
        Policy.from_yaml(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(PolicyError, match="the policy must be a YAML mapping, got list"):
        Policy.from_yaml(listy)
    typo = tmp_path / "typo.yaml"
    typo.write_text("rates:\n  min_sample: 10\n")
    with pytest.raises(PolicyError, match=r"typo.yaml: invalid policy\n  rates.min_sample: unknown key"):
        Policy.from_yaml(typo)


def test_several_errors_are_all_reported() -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_mapping({"rates": {"action": "warn", "scope": "x"}})
    assert "rates.action = 'warn'" in str(info.value) and "rates.scope = 'x'" in str(info.value)


def test_default_policy_file_is_valid_and_documented() -> None:
    path = default_policy_path()
    policy = Policy.from_yaml(path)
    assert policy.enabled and policy.toxicity.enabled and policy.rates.enabled
    assert policy.groups.source == "both"
    assert len(policy.groups.allowed) == 23
    assert policy.toxicity.categories["toxicity"].flag == 0.5
    # The broad toxicity category only flags; the specific harms block (docs/guard.md).
    assert policy.toxicity.categories["toxicity"].block is None
    blocking = {name for name, t in policy.toxicity.categories.items() if t.block is not None}
    assert blocking == {"severe_toxicity", "threat", "identity_attack"}
    assert {m.name for m in policy.rates.monitors} == {"negative", "guard_flag", "guard_block"}
    text = path.read_text()
    assert text.count("#") > 20  # the shipped file explains its keys


def test_valid_policy_values_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 3\nenabled: false\ngroups: {source: request, allowed: [Female, male]}\n"
        "rates: {window: {seconds: 60}, reference: female, parity_difference: {max: 0.1}}\n"
    )
    policy = Policy.from_yaml(path)
    assert policy.version == "3"
    assert policy.enabled is False
    assert policy.groups.allowed == ("female", "male")
    assert policy.rates.window.seconds == 60 and policy.rates.window.size is None
    assert policy.rates.reference == "female"
    assert policy.label_values == ("female", "male", "other", "none")


def test_design_sketch_label_shorthand() -> None:
    """DESIGN.md writes `rates: {label: negative}`; it means one label monitor plus the guard's own."""
    policy = Policy.from_mapping({"rates": {"label": "Not Toxic"}})
    monitors = [(m.name, m.source, m.outcome, m.harm) for m in policy.rates.monitors]
    assert monitors == [
        ("not_toxic", "label", "Not Toxic", "high_rate"),
        ("guard_flag", "guard", "flag", "high_rate"),
        ("guard_block", "guard", "block", "high_rate"),
    ]
    with pytest.raises(PolicyError, match="rates: sets both label and monitors; keep monitors"):
        Policy.from_mapping({"rates": {"label": "negative", "monitors": []}})


def test_design_sketch_parses() -> None:
    """The policy sketch of DESIGN.md is a valid policy as written."""
    sketch = """
groups:
  source: request
  allowed: [female, male, nonbinary]
toxicity:
  categories: {toxicity: {flag: 0.5, block: 0.9}, threat: {flag: 0.3, block: 0.8}}
  on_error: flag
rates:
  label: negative
  window: {size: 1000}
  impact_ratio: {min: 0.8}
  min_samples: 50
  confidence: 0.95
  action: flag
"""
    import yaml

    policy = Policy.from_mapping(yaml.safe_load(sketch))
    assert policy.rates.monitors[0].outcome == "negative"
    assert policy.rates.window.size == 1000
