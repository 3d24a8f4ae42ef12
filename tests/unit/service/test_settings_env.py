"""Service settings come from FAIRGATE_* variables; bad values name the variable and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairgate.service.settings import FairgateSettings, ServiceSettings, SettingsError


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POLICY", "CLASSIFIER_TAG", "GUARD_TAG", "ONNX_VARIANT", "WORKERS", "MAX_ITEMS"):
        monkeypatch.delenv(f"FAIRGATE_{name}", raising=False)

    settings = FairgateSettings.from_env().service

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
    monkeypatch.setenv("FAIRGATE_GUARD_INTRA_OP_THREADS", "3")

    settings = FairgateSettings.from_env().service

    assert settings.policy == policy
    assert settings.classifier_tag == "my-classifier:v3"
    assert settings.onnx_variant == "fp32"
    assert (settings.workers, settings.max_batch_size) == (2, 64)
    assert settings.guard_threads_per_session(cpus=2) == 3


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRGATE_ONNX_VARIANT", "int4")
    monkeypatch.setenv("FAIRGATE_MAX_ITEMS", "0")
    monkeypatch.setenv("FAIRGATE_GUARD_TAG", "two words")
    monkeypatch.setenv("FAIRGATE_GUARD_INTRA_OP_THREADS", "0")

    with pytest.raises(SettingsError) as caught:
        FairgateSettings.from_env()

    text = str(caught.value)
    assert "FAIRGATE_GUARD_INTRA_OP_THREADS='0'" in text
    assert "FAIRGATE_ONNX_VARIANT='int4'" in text
    assert "FAIRGATE_MAX_ITEMS='0'" in text
    assert "FAIRGATE_GUARD_TAG='two words': 'two words' is not a model tag; use NAME or NAME:VERSION" in text


def test_onnx_threads_share_the_cpus_over_the_workers_and_the_overlapped_sessions_unless_set() -> None:
    # Overlapped (the default): guard and classifier run at once, so each gets half a worker's CPUs.
    assert ServiceSettings().overlap_models
    assert ServiceSettings(workers=1).threads_per_session(cpus=2) == 1
    assert ServiceSettings(workers=1).threads_per_session(cpus=8) == 4
    assert ServiceSettings(workers=2).threads_per_session(cpus=8) == 2
    assert ServiceSettings(workers=3).threads_per_session(cpus=8) == 1
    assert ServiceSettings(workers=4).threads_per_session(cpus=2) == 1
    # One after the other: each session gets all of a worker's CPUs.
    assert ServiceSettings(workers=1, overlap_models=False).threads_per_session(cpus=2) == 2
    assert ServiceSettings(workers=3, overlap_models=False).threads_per_session(cpus=8) == 2
    assert ServiceSettings(workers=4, overlap_models=False).threads_per_session(cpus=2) == 1
    assert ServiceSettings(intra_op_threads=3, workers=2).threads_per_session(cpus=2) == 3
    # FAIRGATE_CPUS (Kubernetes: the CPU request) replaces the count the process would make.
    assert ServiceSettings(cpus=4, workers=1).threads_per_session() == 2
    assert ServiceSettings(cpus=1, workers=1).threads_per_session() == 1


def test_the_guard_takes_a_workers_cpus_when_the_models_overlap() -> None:
    """The batch waits for the slower overlapped session, the guard with the default models."""
    assert ServiceSettings(workers=1).guard_threads_per_session(cpus=2) == 2
    assert ServiceSettings(workers=1).threads_per_session(cpus=2) == 1  # the classifier keeps its half
    assert ServiceSettings(workers=2).guard_threads_per_session(cpus=8) == 4
    # In sequence (one CPU per worker, or overlap off): the same as every other session.
    assert ServiceSettings(workers=1).guard_threads_per_session(cpus=1) == 1
    assert ServiceSettings(workers=1, overlap_models=False).guard_threads_per_session(cpus=2) == 2
    assert ServiceSettings(workers=4, overlap_models=False).guard_threads_per_session(cpus=2) == 1
    # Explicit settings win: FAIRGATE_GUARD_INTRA_OP_THREADS, else FAIRGATE_INTRA_OP_THREADS.
    assert ServiceSettings(intra_op_threads=1).guard_threads_per_session(cpus=8) == 1
    assert ServiceSettings(intra_op_threads=1, guard_intra_op_threads=3).guard_threads_per_session(cpus=8) == 3
    assert ServiceSettings(guard_intra_op_threads=1).guard_threads_per_session(cpus=8) == 1


def test_models_overlap_only_when_a_worker_has_two_cpus() -> None:
    """On one CPU per worker the two sessions could only take turns: they run in sequence."""
    assert ServiceSettings(workers=1).overlaps(cpus=2)
    assert ServiceSettings(workers=2).overlaps(cpus=4)
    assert not ServiceSettings(workers=1).overlaps(cpus=1)
    assert not ServiceSettings(workers=2).overlaps(cpus=2)
    assert not ServiceSettings(workers=4).overlaps(cpus=2)
    assert not ServiceSettings(workers=1, overlap_models=False).overlaps(cpus=8)
    assert ServiceSettings(cpus=2, workers=1).overlaps()
    assert not ServiceSettings(cpus=1, workers=1).overlaps()  # the Kubernetes manifest's one-CPU request
    # 3 CPUs over 2 workers: one each, so the sessions run in sequence on one thread.
    assert ServiceSettings(workers=2).threads_per_session(cpus=3) == 1


def test_every_section_reads_its_documented_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FAIRGATE_MAX_CONCURRENCY", "8")
    monkeypatch.setenv("FAIRGATE_REQUEST_TIMEOUT_S", "2.5")
    monkeypatch.setenv("FAIRGATE_API_KEYS_PROTECT_DOCS", "true")
    monkeypatch.setenv("FAIRGATE_AUDIT_SYNCHRONOUS", "NORMAL")
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    monkeypatch.setenv("FAIRGATE_FAULTS", "scorer=sleep:2")

    settings = FairgateSettings.from_env()

    assert (settings.limits.max_concurrency, settings.limits.request_timeout_s) == (8, 2.5)
    assert settings.auth.api_keys_protect_docs is True
    assert settings.audit.synchronous == "NORMAL"
    assert settings.audit.location() == str(tmp_path / "fairgate" / "audit.sqlite3")
    assert settings.service.faults == {"scorer": ("sleep", 2.0)}


def test_bad_values_in_every_section_are_listed_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRGATE_MAX_CONCURRENCY", "0")
    monkeypatch.setenv("FAIRGATE_MIN_KEY_CHARS", "many")
    monkeypatch.setenv("FAIRGATE_AUDIT_SYNCHRONOUS", "sometimes")
    monkeypatch.setenv("FAIRGATE_FAULTS", "model=explode")

    with pytest.raises(SettingsError) as caught:
        FairgateSettings.from_env()

    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid fairgate service settings:"
    assert len(lines) == 5 and all(line.endswith("fix or unset the variable") for line in lines[1:])
    text = str(caught.value)
    assert "FAIRGATE_MAX_CONCURRENCY='0': Input should be greater than or equal to 1" in text
    assert "FAIRGATE_MIN_KEY_CHARS='many'" in text
    assert "FAIRGATE_AUDIT_SYNCHRONOUS='sometimes': Input should be 'FULL' or 'NORMAL'" in text
    assert "FAIRGATE_FAULTS='model=explode': cannot read 'model=explode'; use scorer=raise" in text


def test_keys_never_reach_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRGATE_API_KEYS", "k-secret-0123456789abcdef")
    with pytest.raises(SettingsError) as caught:
        FairgateSettings.from_env(auth={"api_keys": ["not", "a", "string"], "ops_api_keys": 5})
    assert "FAIRGATE_API_KEYS='***'" in str(caught.value) and "FAIRGATE_OPS_API_KEYS='***'" in str(caught.value)
    assert "k-secret" not in str(caught.value)


def test_sections_given_directly_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from fairgate.service.settings import LimitSettings

    monkeypatch.setenv("FAIRGATE_MAX_CONCURRENCY", "8")
    monkeypatch.setenv("FAIRGATE_WORKERS", "3")
    settings = FairgateSettings.from_env(limits=LimitSettings(max_concurrency=2))
    assert settings.limits.max_concurrency == 2 and settings.service.workers == 3


def test_only_the_settings_read_the_environment() -> None:
    """One settings object: no other module of fairgate.service reads os.environ or getenv."""
    import re

    service_dir = Path(__file__).resolve().parents[3] / "service"
    readers = sorted(
        str(path.relative_to(service_dir))
        for path in service_dir.rglob("*.py")
        if re.search(r"os\.environ|getenv\(", path.read_text(encoding="utf-8"))
    )
    assert readers == ["settings.py"]


def test_max_explained_is_a_limit_read_from_its_flat_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAIRGATE_MAX_EXPLAINED", raising=False)
    assert FairgateSettings.from_env().limits.max_explained == 8
    monkeypatch.setenv("FAIRGATE_MAX_EXPLAINED", "2")
    assert FairgateSettings.from_env().limits.max_explained == 2
    monkeypatch.setenv("FAIRGATE_MAX_EXPLAINED", "-1")
    with pytest.raises(SettingsError, match="FAIRGATE_MAX_EXPLAINED"):
        FairgateSettings.from_env()
