"""Shared fixtures for the models unit tests: one tiny random encoder per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.tiny_models import make_tiny_encoder_dir


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder_dir(tmp_path_factory.mktemp("tiny-encoder"))
