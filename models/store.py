"""The BentoML model store: save a fairgate model directory with its metadata, find it again.

The store is the one hand-over point to serving (``service`` reads it; ``models`` never
imports ``service``). Every fairgate model carries the label ``fairgate=model`` so
``fairgate models`` can list ours among whatever else the store holds.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairgate.models.errors import StoreError

__all__ = [
    "StoredModel",
    "get_stored_model",
    "json_safe",
    "list_stored_models",
    "model_exists",
    "save_model_directory",
]

logger = logging.getLogger(__name__)

_FAIRGATE_LABEL = ("fairgate", "model")


@dataclass(frozen=True, kw_only=True)
class StoredModel:
    """A fairgate model in the store: its tag, directory and metadata."""

    tag: str
    path: Path
    metadata: dict[str, Any]
    labels: dict[str, str]
    created: str


def json_safe(value: Any) -> Any:
    """Metadata as plain JSON: NaN/inf become None, tuples lists, numpy scalars Python."""
    if isinstance(value, str):
        return str(value)  # str subclasses (torch's TorchVersion) confuse YAML
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _store_safe(value: Any) -> Any:
    """BentoML metadata refuses None: drop None entries (absent means "not set")."""
    if isinstance(value, dict):
        return {k: _store_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_store_safe(v) if v is not None else "n/a" for v in value]
    return value


def save_model_directory(
    name: str,
    directory: Path,
    *,
    metadata: dict[str, Any],
    labels: dict[str, str] | None = None,
) -> str:
    """Copy every file of ``directory`` into a new store entry ``name:<version>``.

    Returns the full tag. The directory must hold ``fairgate.json`` (checked), so a
    half-written export cannot be stored.
    """
    import bentoml

    directory = Path(directory)
    if not (directory / "fairgate.json").is_file():
        raise StoreError(f"{directory} has no fairgate.json; export the model before storing it")
    store_labels = {_FAIRGATE_LABEL[0]: _FAIRGATE_LABEL[1], **(labels or {})}
    with bentoml.models.create(name, labels=store_labels, metadata=_store_safe(json_safe(metadata))) as entry:
        for item in directory.iterdir():
            target = Path(entry.path) / item.name
            if item.is_dir():
                shutil.copytree(item, target)
            else:
                shutil.copy2(item, target)
        tag = str(entry.tag)
    logger.info("stored %s", tag)
    return tag


def model_exists(tag: str) -> bool:
    """Whether ``tag`` (``name`` means its latest version) is in the store."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.models.get(tag)
    except NotFound:
        return False
    return True


def get_stored_model(tag: str) -> StoredModel:
    """The stored model for ``tag``; :class:`StoreError` when missing or not ours."""
    import bentoml
    from bentoml.exceptions import BentoMLException, NotFound

    try:
        entry = bentoml.models.get(tag)
    except (NotFound, BentoMLException, ValueError) as error:
        raise StoreError(
            f"model {tag!r} is not in the BentoML store; build it first "
            "(`fairgate build classifier`) or list what is there with `fairgate models`"
        ) from error
    path = Path(entry.path)
    if not (path / "fairgate.json").is_file():
        raise StoreError(f"model {entry.tag} has no fairgate.json; it is not a fairgate model")
    return _stored(entry)


def list_stored_models() -> list[StoredModel]:
    """Every fairgate model in the store, newest first."""
    import bentoml

    found = []
    for entry in bentoml.models.list():
        labels = dict(entry.info.labels or {})
        if labels.get(_FAIRGATE_LABEL[0]) == _FAIRGATE_LABEL[1] or (Path(entry.path) / "fairgate.json").is_file():
            found.append(_stored(entry))
    return sorted(found, key=lambda m: m.created, reverse=True)


def _stored(entry: Any) -> StoredModel:
    return StoredModel(
        tag=str(entry.tag),
        path=Path(entry.path),
        metadata=dict(entry.info.metadata or {}),
        labels=dict(entry.info.labels or {}),
        created=entry.info.creation_time.isoformat(timespec="seconds"),
    )
