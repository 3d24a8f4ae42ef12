"""A typed Python client for the fairgate HTTP API, sync and async, over httpx.

::

    from fairgate.client import FairgateClient

    with FairgateClient(base_url="http://localhost:3000", api_key="...") as client:
        result = client.classify("Great service, fast delivery.", group="male")
        print(result.action, result.label, result.scores)
        results = client.classify_many(texts)   # any number, sent in batches of max_items

Light on purpose: httpx and pydantic only, no BentoML, ONNX Runtime or torch, so a program
that calls the service does not carry the service. Results are pydantic models mirroring
the service's JSON (:mod:`fairgate.client.models`); errors are the specific exceptions of
:mod:`fairgate.client.errors`.
"""

from fairgate.client._async import AsyncFairgateClient
from fairgate.client._exchange import DEFAULT_MAX_ITEMS, ItemLike
from fairgate.client._retry import RetryPolicy
from fairgate.client._sync import FairgateClient
from fairgate.client.errors import (
    FairgateAuthError,
    FairgateConnectionError,
    FairgateError,
    FairgateHTTPError,
    FairgateRequestError,
    FairgateResponseError,
    FairgateServerError,
    FairgateUnavailableError,
)
from fairgate.client.models import ClassifyItem, ClassifyResult, GuardrailsStatus, Reason

__all__ = [
    "DEFAULT_MAX_ITEMS",
    "AsyncFairgateClient",
    "ClassifyItem",
    "ClassifyResult",
    "FairgateAuthError",
    "FairgateClient",
    "FairgateConnectionError",
    "FairgateError",
    "FairgateHTTPError",
    "FairgateRequestError",
    "FairgateResponseError",
    "FairgateServerError",
    "FairgateUnavailableError",
    "GuardrailsStatus",
    "ItemLike",
    "Reason",
    "RetryPolicy",
]
