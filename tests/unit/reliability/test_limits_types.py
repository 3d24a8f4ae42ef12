"""The reusable request types: every bad text or group is a validation error naming the limit."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from fairgate.service.fields import MAX_GROUP_CHARS, GroupName, bounded_text


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: bounded_text(20)  # type: ignore[valid-type]
    group: GroupName | None = None


def error_of(**data: object) -> dict:
    with pytest.raises(ValidationError) as caught:
        Item.model_validate(data)
    (error,) = caught.value.errors()
    return error


def test_good_item_passes() -> None:
    item = Item(text="hello", group="female")
    assert (item.text, item.group) == ("hello", "female")


@pytest.mark.parametrize(
    ("data", "kind", "field", "words"),
    [
        ({"text": ""}, "string_too_short", "text", "at least 1"),
        ({"text": " \n\t "}, "value_error", "text", "only whitespace"),
        ({"text": "\u200b\u200b\u200b"}, "value_error", "text", "zero-width"),
        ({"text": "x" * 21}, "string_too_long", "text", "at most 20 characters"),
        ({"text": 5}, "string_type", "text", "valid string"),
        ({}, "missing", "text", "required"),
        ({"text": "ok", "extra": 1}, "extra_forbidden", "extra", "not permitted"),
        ({"text": "ok", "group": "g" * (MAX_GROUP_CHARS + 1)}, "string_too_long", "group", f"at most {MAX_GROUP_CHARS}"),
        ({"text": "ok", "group": "a\x00b"}, "value_error", "group", "control characters"),
        ({"text": "ok", "group": "a\u2028b"}, "value_error", "group", "control characters"),
        ({"text": "ok", "group": "x\x85"}, "value_error", "group", "control characters"),
        ({"text": "ok", "group": "  "}, "value_error", "group", "whitespace"),
        ({"text": "ok", "group": 7}, "string_type", "group", "valid string"),
    ],
)
def test_bad_items_name_the_field_and_the_limit(data: dict, kind: str, field: str, words: str) -> None:
    error = error_of(**data)
    assert error["type"] == kind
    assert error["loc"][-1] == field
    assert words in error["msg"]


def test_limit_is_in_the_json_schema() -> None:
    schema = Item.model_json_schema()
    assert schema["properties"]["text"]["maxLength"] == 20
    assert schema["properties"]["text"]["minLength"] == 1


def test_nonpositive_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 character"):
        bounded_text(0)
