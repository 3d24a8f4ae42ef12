"""Fixtures for the guard's unit tests: a tiny HF config dir and Detoxify checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.guard.tiny_detoxify import write_detoxify_checkpoint, write_hf_config_dir


@pytest.fixture(scope="module")
def hf_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hf_config_dir(tmp_path_factory.mktemp("hf-config"))


@pytest.fixture(scope="module")
def original_checkpoint(tmp_path_factory: pytest.TempPathFactory, hf_config_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "toxic_original-tiny.ckpt"
    return write_detoxify_checkpoint(path, hf_config_dir, layout="original")


@pytest.fixture(scope="module")
def unbiased_checkpoint(tmp_path_factory: pytest.TempPathFactory, hf_config_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "toxic_debiased-tiny.ckpt"
    return write_detoxify_checkpoint(path, hf_config_dir, layout="unbiased", seed=1)
