"""fairgate.json has one reader: the exporter, the runtime and the CLI check it the same way."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fairgate.guardrails import manifest as manifest_module
from fairgate.guardrails import onnx_model
from fairgate.guardrails.manifest import ModelDirectoryError, ModelManifest, read_manifest
from fairgate.guardrails.normalize import TextNormalization
from fairgate.models import export

# What fairgate has written since the format began: the shape of every stored model.
WRITTEN = {
    "format": "fairgate-onnx-text/1",
    "task": "single_label_classification",
    "labels": ["negative", "positive"],
    "max_length": 128,
    "files": {"fp32": "model.onnx", "int8": "model.int8.onnx", "tokenizer": "tokenizer.json"},
    "input_names": ["input_ids", "attention_mask", "token_type_ids"],
    "output_name": "logits",
}


def _directory(tmp_path: Path, content: Any) -> Path:
    text = content if isinstance(content, str) else json.dumps(content)
    (tmp_path / "fairgate.json").write_text(text, encoding="utf-8")
    return tmp_path


def test_the_exporter_the_runtime_and_the_models_package_share_one_reader() -> None:
    assert export.read_manifest is manifest_module.read_manifest
    assert onnx_model.read_manifest is manifest_module.read_manifest
    assert onnx_model.ModelDirectoryError is manifest_module.ModelDirectoryError
    assert export.MANIFEST_FORMAT == manifest_module.MANIFEST_FORMAT


def test_written_manifest_is_byte_for_byte_the_format_stored_models_have(tmp_path: Path) -> None:
    returned = export.write_manifest(
        tmp_path,
        task="single_label_classification",
        labels=["negative", "positive"],
        max_length=128,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
    )

    text = (tmp_path / "fairgate.json").read_text(encoding="utf-8")
    assert text == json.dumps(WRITTEN, indent=2) + "\n"
    assert returned == WRITTEN


def test_a_stored_manifest_reads_back_unchanged_with_unknown_keys_kept(tmp_path: Path) -> None:
    social = TextNormalization.social().to_manifest()
    stored = {**WRITTEN, "normalization": social, "added_by_a_newer_fairgate": {"x": 1}}

    manifest = read_manifest(_directory(tmp_path, stored))

    assert manifest.as_json() == stored
    assert list(manifest.as_json()) == list(stored)
    assert (manifest.task, manifest.labels, manifest.max_length) == (
        "single_label_classification",
        ("negative", "positive"),
        128,
    )
    assert manifest.text_normalization == TextNormalization.social()
    assert manifest["labels"] == ["negative", "positive"]  # key access for callers of the JSON object


def test_defaults_for_the_optional_keys(tmp_path: Path) -> None:
    minimal = {k: WRITTEN[k] for k in ("format", "task", "labels", "max_length")}
    manifest = read_manifest(_directory(tmp_path, {**minimal, "files": {"int8": "m.onnx"}}))

    assert manifest.output_name == "logits"
    assert manifest.tokenizer_file == "tokenizer.json"
    assert manifest.text_normalization.is_identity
    assert manifest.as_json() == {**minimal, "files": {"int8": "m.onnx"}}, "defaults are not written back"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "regression"}, "task is 'regression', expected one of single_label_classification, "),
        ({"max_length": 0}, "max_length is 0: Input should be greater than or equal to 1"),
        ({"max_length": "128"}, "max_length is '128': Input should be a valid integer"),
        ({"labels": []}, "labels is []"),
        ({"files": {"fp32": 3}}, "files.fp32 is 3: Input should be a valid string"),
        ({"format": "fairgate-onnx-text/2"}, "format is 'fairgate-onnx-text/2', expected 'fairgate-onnx-text/1'"),
    ],
)
def test_a_bad_value_names_the_file_the_key_and_the_fix(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    directory = _directory(tmp_path, {**WRITTEN, **change})

    with pytest.raises(ModelDirectoryError) as raised:
        read_manifest(directory)

    text = str(raised.value)
    assert text.startswith(f"{directory / 'fairgate.json'}: ")
    assert message in text
    assert text.endswith("rebuild the model with this version of fairgate (`fairgate build ...`)")


def test_a_missing_key_is_named(tmp_path: Path) -> None:
    without_files = {k: v for k, v in WRITTEN.items() if k != "files"}
    with pytest.raises(ModelDirectoryError, match=r"fairgate.json: key 'files' is missing; rebuild the model"):
        read_manifest(_directory(tmp_path, without_files))


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "is not valid JSON"), ("[1, 2]", "holds a JSON list, not an object")],
)
def test_a_file_that_is_no_manifest_at_all(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(ModelDirectoryError, match=message):
        read_manifest(_directory(tmp_path, content))


def test_no_manifest_says_what_a_model_directory_needs(tmp_path: Path) -> None:
    with pytest.raises(ModelDirectoryError, match="fairgate.json not found: a fairgate model directory needs"):
        read_manifest(tmp_path)


def test_a_normalisation_this_fairgate_cannot_apply_is_refused_at_read(tmp_path: Path) -> None:
    entry = {**TextNormalization.social().to_manifest(), "version": 99}
    with pytest.raises(ModelDirectoryError, match=r"fairgate.json: text normalization 'social' is version 99.*install"):
        read_manifest(_directory(tmp_path, {**WRITTEN, "normalization": entry}))


def test_the_writer_refuses_what_the_reader_would(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_length"):
        export.write_manifest(
            tmp_path, task="single_label_classification", labels=["a"], max_length=0, input_names=[]
        )
    assert not (tmp_path / "fairgate.json").exists()


def test_manifest_is_immutable() -> None:
    manifest = ModelManifest.model_validate(WRITTEN)
    with pytest.raises(ValueError, match="frozen"):
        manifest.task = "multi_label_classification"  # type: ignore[misc]


def test_model_files_come_from_the_manifest(model_dir_factory: Callable[..., Path]) -> None:
    path = model_dir_factory(labels=["a", "b"], task="single_label_classification")
    manifest = read_manifest(path)

    assert manifest.resolve_files(path, "int8") == (path / "model.int8.onnx", path / "tokenizer.json")
    entry = json.loads((path / "fairgate.json").read_text())
    del entry["files"]["int8"]
    (path / "fairgate.json").write_text(json.dumps(entry))
    with pytest.raises(ModelDirectoryError, match=r"fairgate.json: files has no 'int8' entry; available: fp32"):
        read_manifest(path).resolve_files(path, "int8")
