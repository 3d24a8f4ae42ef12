"""Wire shapes of ``POST /classify``: one JSON object in, one result object out, yet a list inside.

Both inference APIs take a list of items, because that is what BentoML's adaptive
batching (``FAIRGATE_BATCHING=bentoml``, ``batchable=True``) needs: requests' lists are
joined, the method runs once on the joined list, and the result list is split back.
``/classify`` must still accept one ``{"text", "group"}`` object and answer one object:

- :func:`single_item_input` parses the object and hands the method a list of one;
- :func:`single_result_output` takes the method's list of one and answers its element.

Why not let ``/classify`` call a batchable method through ``self.to_async``? That
in-process proxy recycles its aiohttp session every 100 calls and drops the calls in
flight (``ServerDisconnectedError``, BentoML issues 5540/5544; here on 1.4.39, 29 of 640
requests failed at 16 concurrent clients), and the extra HTTP hop through the whole
middleware stack counted every request twice in BentoML's request metrics.

Both build on ``IORootModel``, the class BentoML uses for every root (un-keyed) body.
"""

from __future__ import annotations

import json
from typing import Any

from _bentoml_sdk.io_models import IORootModel
from pydantic import BaseModel, ConfigDict, field_validator

from fairgate.service.schemas import ClassifyRequest, ClassifyResult

__all__ = ["batch_result_output", "single_item_input", "single_result_output"]


def _cache_json_schema(cls: type[IORootModel[Any]]) -> type[IORootModel[Any]]:
    """Build ``model_json_schema()`` once per class instead of once per request.

    BentoML 1.4 calls it on a root model for every request (``IOMixin.mime_type`` for the
    response, ``IORootModel.model_validate_json`` for the body) and pydantic rebuilds the
    whole schema each time: ~40% of the event loop's busy time under load (py-spy).

    Those two read only the schema's top-level ``type`` (and ``format``/``content_type``
    for files), so they are answered from the one cached schema without copying it:
    ``mime_type()`` once per class (while ``media_type`` is unset, as BentoML does), and
    ``model_validate_json`` parses the body as BentoML would for that ``type``. Copying the
    cached schema per call cost more than building it once did: ``copy.deepcopy`` of
    ``ClassifyResult``'s schema (6.6 kB of JSON since the explanations) took ~0.5 ms per
    request (loadtests/profile_edge.py). Any other caller (OpenAPI, tests; not per request)
    still gets a copy of its own, so editing it cannot change the cached one.
    """
    import copy

    build = cls.model_json_schema
    mime_type = cls.mime_type
    validate_json = cls.model_validate_json
    cache: list[dict[str, Any]] = []
    cached_mime: list[str] = []

    def cached() -> dict[str, Any]:
        """The schema, built once: never handed out, never edited."""
        if not cache:
            cache.append(build())
        return cache[0]

    def model_json_schema(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if args or kwargs:
            return build(*args, **kwargs)
        return copy.deepcopy(cached())

    def cached_mime_type() -> str:
        if cls.media_type is not None:
            return cls.media_type
        if not cached_mime:
            cached_mime.append(mime_type())
        return cached_mime[0]

    def model_validate_json(json_data: str | bytes | bytearray, **kwargs: Any) -> IORootModel[Any]:
        if cached().get("type") in ("string", "file"):  # not these models; BentoML's own way
            return validate_json(json_data, **kwargs)
        return cls.model_validate(json.loads(json_data), **kwargs)

    cls.model_json_schema = staticmethod(model_json_schema)
    cls.mime_type = staticmethod(cached_mime_type)
    cls.model_validate_json = staticmethod(model_validate_json)
    return cls


def single_item_input(item_type: type[ClassifyRequest]) -> type[IORootModel[Any]]:
    """The input spec of ``/classify``: the body is one ``item_type`` object."""

    class ClassifyInput(IORootModel[list[item_type]]):  # type: ignore[valid-type]  # item_type: chosen at run time
        # The outermost model's setting decides (pydantic ignores the items' own): never
        # quote the client's text in a ValidationError.
        model_config = ConfigDict(hide_input_in_errors=True)
        __root_input__ = True

        @field_validator("root", mode="before")
        @classmethod
        def _one_object(cls, value: Any) -> Any:
            if isinstance(value, BaseModel):
                return [value]
            if not isinstance(value, dict):
                raise ValueError(  # noqa: TRY004 - pydantic reports ValueError as a 4xx
                    "the body must be one JSON object {\"text\": ..., \"group\": ...}; "
                    "send several items to /classify_batch as {\"items\": [...]}"
                )
            return [value]

        @classmethod
        def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
            # Document the object the client sends, not the list BentoML batches.
            schema = item_type.model_json_schema(*args, **kwargs)
            schema["root_input"] = True
            return schema

    ClassifyInput.__name__ = ClassifyInput.__qualname__ = "ClassifyInput"
    return _cache_json_schema(ClassifyInput)


def single_result_output() -> type[IORootModel[Any]]:
    """The output spec of ``/classify``: BentoML's list of one becomes one result object."""

    class ClassifyOutput(IORootModel[ClassifyResult]):
        @field_validator("root", mode="before")
        @classmethod
        def _only_element(cls, value: Any) -> Any:
            if isinstance(value, list):
                if len(value) != 1:
                    raise ValueError(f"expected the result of one item, got {len(value)}")
                return value[0]
            return value

    ClassifyOutput.__name__ = ClassifyOutput.__qualname__ = "ClassifyOutput"
    return _cache_json_schema(ClassifyOutput)


def batch_result_output() -> type[IORootModel[Any]]:
    """The output spec of ``/classify_batch``: the list of results, schema cached (see above)."""

    class ClassifyBatchOutput(IORootModel[list[ClassifyResult]]):
        pass

    ClassifyBatchOutput.__name__ = ClassifyBatchOutput.__qualname__ = "ClassifyBatchOutput"
    return _cache_json_schema(ClassifyBatchOutput)
