"""``detoxify:VARIANT`` offline fails at once, naming ``bundled`` and ``checkpoint:``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fairgate.models.guard import SourceUnavailableError, fetch_detoxify


def test_hub_offline_fails_fast_naming_the_offline_routes(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError) as info:
        fetch_detoxify("original", work_dir=tmp_path, reachable=lambda: pytest.fail("probed"))
    assert time.monotonic() - started < 5.0
    message = str(info.value)
    assert "--source detoxify:original needs the internet (HF_HUB_OFFLINE is set)" in message
    assert "--source bundled" in message
    assert "--source checkpoint:PATH --hf-config DIR" in message


def test_unreachable_hosts_fail_before_any_download(tmp_path: Path, monkeypatch):
    import torch

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(
        torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("download attempted")
    )
    with pytest.raises(SourceUnavailableError, match="cannot be reached.*--source bundled"):
        fetch_detoxify("unbiased", work_dir=tmp_path, reachable=lambda: False)


def test_cached_checkpoint_is_suggested_for_the_checkpoint_route(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "toxic_original-c1212f89.ckpt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    with pytest.raises(SourceUnavailableError, match=f"--source checkpoint:{cached} --hf-config DIR"):
        fetch_detoxify("original", work_dir=tmp_path)


def test_failed_download_becomes_source_unavailable(tmp_path: Path, monkeypatch):
    import urllib.error

    import torch

    def fail(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)
    with pytest.raises(SourceUnavailableError, match="download failed: .*name resolution.*--source bundled"):
        fetch_detoxify("original-small", work_dir=tmp_path, reachable=lambda: True)
