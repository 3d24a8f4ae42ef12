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
    "NOT_A_NUMBER",
    "StoredModel",
    "get_stored_model",
    "json_safe",
    "list_stored_models",
    "model_exists",
    "save_model_directory",
]

logger = logging.getLogger(__name__)

_FAIRGATE_LABEL = ("fairgate", "model")
# How a figure that cannot be computed is spelled in metadata and JSON (docs/guard.md).
NOT_A_NUMBER = "NaN"


@dataclass(frozen=True, kw_only=True)
class StoredModel:
    """A fairgate model in the store: its tag, directory and metadata."""

    tag: str
    path: Path
    metadata: dict[str, Any]
    labels: dict[str, str]
    created: str


def json_safe(value: Any, *, drop_none: bool = False) -> Any:
    """Metadata as plain JSON: the one sanitiser for the store, model cards and ``--json``.

    A figure that cannot be computed (an AUC on one class, a group with too few rows)
    must stay visible as such, never become a silent 0 or vanish, so NaN (and infinity)
    becomes the string ``"NaN"``. Tuples become lists, numpy scalars Python numbers,
    paths and ``str`` subclasses (torch's ``TorchVersion`` confuses YAML) plain strings.

    ``drop_none``: BentoML's metadata validator refuses ``None`` anywhere, so for the
    store an unset entry is left out of its dict (absent means "not set") and a ``None``
    inside a list becomes ``"n/a"``.
    """
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {
            str(k): json_safe(v, drop_none=drop_none)
            for k, v in value.items()
            if not (drop_none and v is None)
        }
    if isinstance(value, list | tuple):
        return [
            "n/a" if drop_none and v is None else json_safe(v, drop_none=drop_none) for v in value
        ]
    if hasattr(value, "item") and not isinstance(value, bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return NOT_A_NUMBER
    if isinstance(value, Path):
        return str(value)
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
    half-written export cannot be stored. ``metadata`` is stored as :func:`json_safe`
    makes it (NaN as ``"NaN"``, unset entries left out).
    """
    import bentoml

    directory = Path(directory)
    if not (directory / "fairgate.json").is_file():
        raise StoreError(f"{directory} has no fairgate.json; export the model before storing it")
    store_labels = {_FAIRGATE_LABEL[0]: _FAIRGATE_LABEL[1], **(labels or {})}
    with bentoml.models.create(name, labels=store_labels, metadata=json_safe(metadata, drop_none=True)) as entry:
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
