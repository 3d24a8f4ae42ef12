"""Base encoder sources: bundled, a directory, a hub id (offline fails with the way out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairgate.models.encoder import load_tokenizer, resolve_encoder
from fairgate.models.errors import EncoderSourceError


def test_bundled_resolves_to_the_packaged_minilm() -> None:
    source = resolve_encoder("bundled")
    assert source.kind == "bundled"
    assert (Path(source.location) / "config.json").is_file()


def test_directory_needs_a_config(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    assert resolve_encoder(str(tiny_encoder_dir)).kind == "directory"
    with pytest.raises(EncoderSourceError, match="no config.json"):
        resolve_encoder(str(tmp_path))
    with pytest.raises(EncoderSourceError, match="no such directory"):
        resolve_encoder(str(tmp_path / "missing"))


def test_hub_id_offline_names_bundled_and_local_directory() -> None:
    source = resolve_encoder("fairgate-test/not-a-real-model")
    assert source.kind == "hub"
    with pytest.raises(EncoderSourceError) as error:
        load_tokenizer(source)
    message = str(error.value)
    assert "fairgate-test/not-a-real-model" in message
    assert "--base bundled" in message and "--base DIR" in message
