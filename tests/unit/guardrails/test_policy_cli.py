"""``fairgate policy check`` and ``fairgate policy schema``, and ``fairgate --version``, through the CLI's main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fairgate import __version__
from fairgate.guardrails.policy import Policy, default_policy_path
from fairgate.service.cli import main

GOOD = {
    "version": "t-7",
    "groups": {"source": "request", "allowed": ["female", "male"]},
    "toxicity": {"categories": {"toxicity": {"flag": 0.5, "block": 0.9}}, "on_error": "block"},
    "rates": {"label": "negative", "window": {"seconds": 3600}, "impact_ratio": {"min": 0.8}, "action": "flag"},
}
BAD = {
    "version": "t-8",
    "groups": {"allowed": ["female", "other"]},
    "toxicity": {"categories": {"threat": {"flag": 0.9, "block": 0.5}}},
    "rates": {"window": {"size": 0}, "action": "warn", "min_sample": 5},
}


def write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_a_valid_policy_exits_0_with_one_summary_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "good.yaml", GOOD)
    assert main(["policy", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.count("\n") == 1
    assert out.strip() == (
        f"{path}: valid policy, version t-7, 2 groups from request, toxicity on 1 categories "
        "(1 blocking, on_error block), 3 rate monitors (negative, guard_flag, guard_block; window seconds 3600; "
        "impact ratio >= 0.8; action flag)"
    )


def test_the_shipped_default_policy_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", str(default_policy_path())]) == 0
    assert "valid policy, version " in capsys.readouterr().out


def test_an_invalid_policy_exits_1_naming_key_value_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = write(tmp_path, "good.yaml", GOOD), write(tmp_path, "bad.yaml", BAD)
    assert main(["policy", "check", str(good), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert f"{good}: valid policy" in out and str(bad) not in out
    assert f"{bad}: invalid policy" in err
    assert "groups.allowed: 'other' is reserved" in err and "remove it from groups.allowed" in err
    assert "toxicity.categories.threat: flag 0.9 is above block 0.5; set flag <= block" in err
    assert "rates.window.size = 0: should be greater than or equal to 1; raise it" in err
    assert "rates.action = 'warn': should be 'flag' or 'block'; use one of the values listed" in err
    assert "rates.min_sample: unknown key (value 5); remove it or check its spelling" in err
    assert "1 of 2 files invalid" in err


def test_missing_file_and_broken_yaml_say_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("groups: [female\n", encoding="utf-8")
    assert main(["policy", "check", str(tmp_path / "absent.yaml"), str(broken)]) == 1
    err = capsys.readouterr().err
    assert "absent.yaml not found; pass an existing file" in err
    assert f"{broken}: not valid YAML at line 2" in err and "fix the syntax" in err


def test_schema_is_the_policy_models_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["properties"]) == set(Policy.model_fields)
    assert schema["additionalProperties"] is False  # editors flag misspelt keys, as the check does
    rates = schema["$defs"]["RatesPolicy"]["properties"]
    assert rates["action"]["enum"] == ["flag", "block"]
    assert schema["$defs"]["WindowPolicy"]["properties"]["size"]["anyOf"][0]["minimum"] == 1


def test_policy_without_an_action_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy"]) == 2
    assert "check" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"fairgate {__version__}"
