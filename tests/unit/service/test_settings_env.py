"""Service settings come from FAIRGATE_* variables; bad values name the variable and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairgate.service.settings import ServiceSettings, SettingsError


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POLICY", "CLASSIFIER_TAG", "GUARD_TAG", "ONNX_VARIANT", "WORKERS", "MAX_ITEMS"):
        monkeypatch.delenv(f"FAIRGATE_{name}", raising=False)

    settings = ServiceSettings.from_env()

    assert settings.policy is None
    assert settings.classifier_tag == "fairgate-classifier:latest"
    assert settings.guard_tag == "fairgate-toxicity:latest"
    assert settings.onnx_variant == "int8"
    assert (settings.workers, settings.max_items, settings.max_text_chars) == (1, 256, 10_000)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    monkeypatch.setenv("FAIRGATE_POLICY", str(policy))
    monkeypatch.setenv("FAIRGATE_CLASSIFIER_TAG", "my-classifier:v3")
    monkeypatch.setenv("FAIRGATE_ONNX_VARIANT", "fp32")
    monkeypatch.setenv("FAIRGATE_WORKERS", "2")
    monkeypatch.setenv("FAIRGATE_MAX_BATCH_SIZE", "64")

    settings = ServiceSettings.from_env()

    assert settings.policy == policy
    assert settings.classifier_tag == "my-classifier:v3"
    assert settings.onnx_variant == "fp32"
    assert (settings.workers, settings.max_batch_size) == (2, 64)


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRGATE_ONNX_VARIANT", "int4")
    monkeypatch.setenv("FAIRGATE_MAX_ITEMS", "0")
    monkeypatch.setenv("FAIRGATE_GUARD_TAG", "two words")

    with pytest.raises(SettingsError) as caught:
        ServiceSettings.from_env()

    text = str(caught.value)
    assert "FAIRGATE_ONNX_VARIANT='int4'" in text
    assert "FAIRGATE_MAX_ITEMS='0'" in text
    assert "FAIRGATE_GUARD_TAG='two words': 'two words' is not a model tag; use NAME or NAME:VERSION" in text


def test_one_onnx_thread_per_session_unless_set() -> None:
    assert ServiceSettings(workers=1).threads_per_session() == 1
    assert ServiceSettings(workers=4).threads_per_session() == 1
    assert ServiceSettings(intra_op_threads=3).threads_per_session() == 3
