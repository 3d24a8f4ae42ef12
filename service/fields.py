"""Field types of the request bodies: what a text and a group may hold.

The request schemas (:mod:`fairgate.service.schemas`) use them, so an empty, invisible or
oversized text, or a group that is huge or holds control characters, is a 400 that names
the field and the limit, and never reaches a model. The limits are part of the JSON
schema (``minLength``/``maxLength``), so the OpenAPI document states them too.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

__all__ = [
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_MAX_TEXT_CHARS",
    "MAX_GROUP_CHARS",
    "GroupName",
    "bounded_text",
    "has_visible_character",
]

DEFAULT_MAX_ITEMS = 256  # items in one /classify_batch body (FAIRGATE_MAX_ITEMS)
DEFAULT_MAX_TEXT_CHARS = 10_000  # characters in one text (FAIRGATE_MAX_TEXT_CHARS)
MAX_GROUP_CHARS = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# Unicode categories that draw nothing: controls, format characters (zero-width space and
# joiners, bidi marks, BOM), surrogates, unassigned code points and separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zs", "Zl", "Zp"})


def has_visible_character(value: str) -> bool:
    """True when some character of ``value`` draws something (not space, control or zero-width)."""
    return any(
        not char.isspace() and unicodedata.category(char) not in _INVISIBLE_CATEGORIES for char in value
    )


def _not_blank(value: str) -> str:
    if not has_visible_character(value):
        raise ValueError(
            "text is empty or has nothing visible in it (only whitespace, zero-width or control "
            "characters); send the text to classify"
        )
    return value


def _plain_group(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("group contains control characters; send a plain group name such as 'female'")
    if not value.strip():
        raise ValueError("group is empty or only whitespace; send a group name such as 'female', or null")
    return value


def bounded_text(max_chars: int = DEFAULT_MAX_TEXT_CHARS) -> Any:
    """A request text: 1..``max_chars`` characters, some of them visible.

    ``max_chars`` goes into the JSON schema (``maxLength``), so the OpenAPI document states
    the limit and the 400 says "String should have at most N characters". The return type
    is ``Any`` because the ``Annotated`` type is built at run time (mypy cannot see into it).
    """
    if max_chars < 1:
        raise ValueError(f"max_chars={max_chars}; the text limit must be at least 1 character")
    return Annotated[
        str,
        StringConstraints(min_length=1, max_length=max_chars),
        AfterValidator(_not_blank),
        Field(description=f"the text; 1 to {max_chars} characters, not only whitespace (FAIRGATE_MAX_TEXT_CHARS)"),
    ]


GroupName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_GROUP_CHARS),
    AfterValidator(_plain_group),
    Field(description=f"a group name, at most {MAX_GROUP_CHARS} characters, no control characters"),
]
"""A client-sent group: short and printable (it reaches logs and, bounded, metric labels)."""
