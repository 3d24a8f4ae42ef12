"""The manifest records the text normalisation the model was trained with; the runtime reads it back."""

from __future__ import annotations

import json
from pathlib import Path

from fairgate.guardrails.manifest import read_manifest, read_normalization
from fairgate.guardrails.normalize import TextNormalization
from fairgate.models.export import write_manifest


def _write(directory: Path, normalization: TextNormalization | None = None) -> dict:
    return write_manifest(
        directory,
        task="multi_label_classification",
        labels=["toxicity"],
        max_length=64,
        input_names=["input_ids", "attention_mask"],
        normalization=normalization,
    )


def test_recorded_normalisation_is_what_the_runtime_applies(tmp_path: Path) -> None:
    written = _write(tmp_path, TextNormalization.social())

    on_disk = json.loads((tmp_path / "fairgate.json").read_text(encoding="utf-8"))
    assert on_disk["normalization"] == written["normalization"]
    assert on_disk["normalization"]["name"] == "social"
    assert read_manifest(tmp_path).text_normalization == TextNormalization.social()
    assert read_normalization(on_disk, path=tmp_path) == TextNormalization.social()


def test_no_normalisation_writes_no_entry_and_reads_as_identity(tmp_path: Path) -> None:
    _write(tmp_path)

    manifest = read_manifest(tmp_path)
    assert "normalization" not in manifest.as_json()
    assert manifest.normalization is None
    assert manifest.text_normalization.is_identity
    assert read_normalization(manifest).is_identity
