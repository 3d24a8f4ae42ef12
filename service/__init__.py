"""fairgate's serving side: the guarded BentoML service and the ``fairgate`` command line.

``bentoml serve fairgate.service.service:Fairgate`` runs the service; importing this package stays
light (no BentoML, no models) so ``fairgate --help`` is instant. Public API: the
settings and the HTTP schemas below; the service class lives in ``fairgate.service.service``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ClassifyRequest",
    "ClassifyResult",
    "ErrorResponse",
    "FairgateSettings",
    "GuardrailsStatusResponse",
    "ServiceSettings",
    "SettingsError",
]

_EXPORTS = {
    "ClassifyRequest": "fairgate.service.schemas",
    "ClassifyResult": "fairgate.service.schemas",
    "ErrorResponse": "fairgate.service.edge.errors",
    "FairgateSettings": "fairgate.service.settings",
    "GuardrailsStatusResponse": "fairgate.service.schemas",
    "ServiceSettings": "fairgate.service.settings",
    "SettingsError": "fairgate.service.settings",
}


def __getattr__(name: str) -> Any:
    """Import on first use, so ``import fairgate.service.cli`` does not pull pydantic-settings in."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'fairgate.service' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
