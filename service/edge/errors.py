"""The one JSON shape of every error the service answers, and the one function that sends it.

Every 4xx and 5xx that fairgate itself produces (bad bodies, validation, missing keys,
overload, the request deadline, not ready, a full queue, a failed model) is an
:class:`ErrorResponse`::

    {"error": "<what was wrong, the limit and the fix>",
     "detail": "<field: message; ...>",            # only for problems with fields
     "errors": [{"field": "text", "type": "string_too_long", "msg": "..."}]}

``error`` is always there and is meant for people; ``errors`` is for programs. ``detail``
repeats the field problems as one string: BentoML's OpenAPI document declares its error
responses' ``detail`` as a string, so clients written against it keep working. The OpenAPI
document names this model ``FairgateError`` (:func:`error_components`) and every
documented 4xx/5xx refers to it (:mod:`fairgate.service.edge.openapi`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.responses import JSONResponse

__all__ = ["ERROR_SCHEMA", "ErrorResponse", "FieldError", "error_components", "error_response", "field_path"]

ERROR_SCHEMA = "FairgateError"
"""The name of :class:`ErrorResponse` among the OpenAPI document's component schemas."""

_REF_TEMPLATE = "#/components/schemas/{model}"


class FieldError(BaseModel):
    """One problem with one field of the request body."""

    model_config = ConfigDict(frozen=True)

    field: str = Field(description="the field as the client wrote it: text, group, items[3].text; body for the whole body")
    type: str = Field(description="the kind of problem (pydantic's error type), e.g. string_too_long")
    msg: str = Field(description="what is wrong with the field, and the limit")


def field_path(loc: Sequence[Any]) -> str:
    """``["root", 0, "text"]`` -> ``text``; ``["items", 3, "text"]`` -> ``items[3].text``.

    The leading ``root`` and the index of ``/classify``'s single item (item 0 of the list
    BentoML batches) are BentoML's, not the client's, and are left out.
    """
    parts: list[str] = []
    for index, part in enumerate(loc):
        if index == 0 and part == "root":
            continue
        if isinstance(part, int):
            if parts:
                parts[-1] = f"{parts[-1]}[{part}]"
            continue
        parts.append(str(part))
    return ".".join(parts) or "body"


def _optional_fields_have_no_default(schema: dict[str, Any]) -> None:
    """Absent, not null: the optional keys are left out of the body, so the schema shows no default."""
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


class ErrorResponse(BaseModel):
    """A rejected or failed request: what was wrong, the limit, the fix."""

    model_config = ConfigDict(
        title=ERROR_SCHEMA, frozen=True, json_schema_extra=_optional_fields_have_no_default
    )

    error: str = Field(description="what was wrong, the limit and the fix, for people")
    # SkipJsonSchema: the key is absent rather than null (bodies are dumped with exclude_none),
    # and OpenAPI 3.0 has no null type.
    detail: SkipJsonSchema[None] | str = Field(
        default=None, description="the field problems as one string: 'field: message; ...'"
    )
    errors: SkipJsonSchema[None] | list[FieldError] = Field(
        default=None, description="one entry per field problem, for programs"
    )

    @classmethod
    def for_fields(cls, errors: Iterable[FieldError]) -> ErrorResponse:
        """The error of an invalid body: ``error`` and ``detail`` name every field and its problem."""
        listed = list(errors)
        detail = "; ".join(f"{e.field}: {e.msg}" for e in listed)
        return cls(error=f"invalid request: {detail}", detail=detail, errors=listed)


def error_response(
    status_code: int,
    error: ErrorResponse | str,
    *,
    retry_after_s: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The response for an error: ``error`` (a message or a whole :class:`ErrorResponse`) as JSON.

    ``retry_after_s`` sets ``Retry-After`` (every 503 carries one); ``headers`` adds others
    (``WWW-Authenticate`` on a 401). Usable as an ASGI app: ``await response(scope, receive, send)``.
    """
    if not 400 <= status_code <= 599:
        raise ValueError(f"status_code={status_code}; an error response needs a 4xx or 5xx status")
    body = error if isinstance(error, ErrorResponse) else ErrorResponse(error=error)
    all_headers = dict(headers or {})
    if retry_after_s is not None:
        all_headers["Retry-After"] = str(retry_after_s)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status_code, headers=all_headers)


def error_components() -> dict[str, dict[str, Any]]:
    """The OpenAPI component schemas of :class:`ErrorResponse`: ``FairgateError`` and what it refers to."""
    schema = ErrorResponse.model_json_schema(ref_template=_REF_TEMPLATE)
    components: dict[str, dict[str, Any]] = schema.pop("$defs", {})
    components[ERROR_SCHEMA] = schema
    return components
