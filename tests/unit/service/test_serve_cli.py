"""``fairgate serve``: problems found before anything listens (exit 2, naming the fix), then bentoml serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairgate.service.cli import main


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("FAIRGATE_WORKERS", "FAIRGATE_PORT", "FAIRGATE_HOST", "FAIRGATE_POLICY", "FAIRGATE_API_KEYS"):
        monkeypatch.delenv(name, raising=False)


def test_a_bad_setting_stops_it_naming_the_variable(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("FAIRGATE_WORKERS", "zero")
    assert main(["serve", "--skip-model-check", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "FAIRGATE_WORKERS='zero'" in err and "fix or unset the variable" in err


def test_a_bad_option_stops_it(capsys) -> None:
    assert main(["serve", "--skip-model-check", "--dry-run", "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err


def test_a_bad_policy_stops_it_naming_key_and_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: x\nrates:\n  window: {size: 0}\n", encoding="utf-8")
    monkeypatch.setenv("FAIRGATE_POLICY", str(policy))
    assert main(["serve", "--skip-model-check", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "rates.window.size" in err and "fairgate policy check" in err


def test_short_api_keys_stop_it(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("FAIRGATE_API_KEYS", "short")
    assert main(["serve", "--skip-model-check", "--dry-run"]) == 2
    assert "FAIRGATE_API_KEYS" in capsys.readouterr().err


def test_a_missing_model_names_the_build_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "true")
    from fairgate.service.serve_cli import ServeCheckError, _check_models

    # A version no store holds (the store may hold real models under :latest).
    with pytest.raises(ServeCheckError, match="fairgate build classifier --if-missing"):
        _check_models("fairgate-classifier:notbuilt0000000000")


def test_dry_run_prints_bentoml_serve_with_the_settings(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("FAIRGATE_PORT", "3100")
    assert main(["serve", "--skip-model-check", "--dry-run", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "bentoml serve fairgate.service.service:Fairgate --host 0.0.0.0 --port 3100" in out
    assert "FAIRGATE_WORKERS=2" in out
