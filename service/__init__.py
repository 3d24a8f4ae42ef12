"""fairgate's serving side: the guarded BentoML service and the ``fairgate`` command line.

``bentoml serve service.service:Fairgate`` runs the service; importing this package stays
light (no BentoML, no models) so ``fairgate --help`` is instant. Public API: the
settings and the HTTP schemas below; the service class lives in ``service.service``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ClassifyRequest",
    "ClassifyResult",
    "GuardrailsStatusResponse",
    "ServiceSettings",
    "SettingsError",
]

_EXPORTS = {
    "ClassifyRequest": "service.schemas",
    "ClassifyResult": "service.schemas",
    "GuardrailsStatusResponse": "service.schemas",
    "ServiceSettings": "service.settings",
    "SettingsError": "service.settings",
}


def __getattr__(name: str) -> Any:
    """Import on first use, so ``import service.cli`` does not pull pydantic-settings in."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'service' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
