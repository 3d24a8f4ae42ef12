"""Session-wide test isolation: no network, no user model store, no telemetry.

Set in ``pytest_configure`` (before any test module imports bentoml or transformers),
so every test sees a private BentoML home and the Hugging Face libraries never try the
hub. Tests that need the real store or the network say so and skip.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "FAIRGATE_TEST_KEEP_BENTOML_HOME" not in os.environ:
        home = tempfile.mkdtemp(prefix="fairgate-test-bentoml-")
        os.environ["BENTOML_HOME"] = home


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the project; skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (only present on the team's machines)")
    return SHARED_DATA


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """The CLI's ``main`` calls ``logging.basicConfig``; put the root logger's handlers and
    level back after the test, so the next test's log capture starts clean."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
