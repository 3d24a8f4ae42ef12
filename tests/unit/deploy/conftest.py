"""Fixtures for the deploy tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def promtool() -> Path:
    """Path of promtool, installed with Debian's prometheus package when missing."""
    from tests.setup.prometheus_server import require_prometheus

    return require_prometheus() / "promtool"
