"""``detoxify:VARIANT``: fetch a published Detoxify checkpoint and convert it.

The weights come from the URLs the detoxify package itself uses (``MODEL_URLS``, via
``torch.hub`` and its cache, exactly as ``detoxify.load_checkpoint`` downloads them);
the base model's config and tokenizer come from the Hugging Face hub. Both are then
handed to the offline ``checkpoint:`` loader, so the conversion code is the one the
offline tests exercise.

Without the internet we fail at once, before any download is attempted, with a message
naming the offline routes (``bundled``, and ``checkpoint:`` for a copy fetched elsewhere).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from fairgate.models.guard._checkpoint import ConvertedGuard, load_detoxify_checkpoint, read_checkpoint
from fairgate.models.guard._errors import SourceUnavailableError

logger = logging.getLogger(__name__)

_HOSTS: tuple[tuple[str, int], ...] = (("github.com", 443), ("huggingface.co", 443))
_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """True when the Hugging Face libraries have been told to stay offline."""
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hosts_reachable(timeout: float = 3.0) -> bool:
    """Whether the checkpoint host and the hub answer a TCP connect within ``timeout``."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy")):
        return True  # behind a proxy a direct connect proves nothing; let the download try
    for host, port in _HOSTS:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError:
            return False
    return True


def _unavailable(variant: str, reason: str, cached: Path | None) -> SourceUnavailableError:
    hint = (
        f" A copy of its checkpoint is already cached at {cached}: convert it offline with "
        f"--source checkpoint:{cached} --hf-config DIR."
        if cached is not None and cached.is_file()
        else " Or fetch the checkpoint on a connected machine and convert it offline with "
        "--source checkpoint:PATH --hf-config DIR (DIR: the base model's config.json and "
        "tokenizer files)."
    )
    return SourceUnavailableError(
        f"--source detoxify:{variant} needs the internet ({reason}). Offline, use "
        f"--source bundled (the default, built from data shipped with fairgate).{hint}"
    )


def fetch_detoxify(
    variant: str,
    *,
    work_dir: Path,
    reachable: Callable[[], bool] = hosts_reachable,
) -> ConvertedGuard:
    """Download (or reuse the torch.hub cache of) a Detoxify checkpoint and convert it."""
    import torch
    from detoxify.detoxify import MODEL_URLS

    url = MODEL_URLS[variant]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if hub_offline():
        raise _unavailable(variant, "HF_HUB_OFFLINE is set", cached)
    if not reachable():
        raise _unavailable(variant, "github.com / huggingface.co cannot be reached", cached)

    from transformers import AutoConfig, AutoTokenizer

    config_dir = work_dir / "hf-config"
    try:
        if not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            logger.info("downloading %s", url)
            torch.hub.download_url_to_file(url, str(cached), progress=True)
        base = read_checkpoint(cached)["config"]["arch"]["args"]["model_type"]
        AutoConfig.from_pretrained(base).save_pretrained(config_dir)
        AutoTokenizer.from_pretrained(base, use_fast=True).save_pretrained(config_dir)
    except (OSError, ValueError) as error:  # URLError, requests and hub errors are OSErrors
        raise _unavailable(variant, f"download failed: {error}", cached) from error
    converted = load_detoxify_checkpoint(cached, hf_config_dir=config_dir)
    converted.metadata["detoxify"]["variant"] = variant
    converted.metadata["detoxify"]["url"] = url
    return converted
