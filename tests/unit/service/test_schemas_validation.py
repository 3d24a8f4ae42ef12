"""The HTTP edge: what /classify and /classify_batch accept, and the shapes they answer."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fairgate.service._io import single_item_input, single_result_output
from fairgate.service.schemas import (
    ClassifyRequest,
    ClassifyResult,
    classify_batch_request_type,
    classify_request_type,
)

RESULT = {
    "request_id": "r1",
    "label": None,
    "scores": {},
    "action": "block",
    "reasons": [
        {
            "monitor": "toxicity",
            "stage": "input",
            "code": "toxicity_threat",
            "action": "block",
            "category": "threat",
            "value": 0.93,
            "threshold": 0.8,
            "message": "threat score 0.930 >= block threshold 0.8",
        }
    ],
    "toxicity": {"threat": 0.93},
    "groups": ["none"],
}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": "   "}, "text is empty or has nothing visible in it"),
        ({"text": "\u200b\u200b\u200b"}, "text is empty or has nothing visible in it"),
        ({"text": "\u200d\ufeff\x00 \u2060"}, "nothing visible"),
        ({"text": ""}, "at least 1 character"),
        ({"text": "x" * 10_001}, "at most 10000 characters"),
        ({"text": "ok", "group": "fe\x00male"}, "group contains control characters"),
        ({"text": "ok", "group": "g" * 65}, "at most 64 characters"),
        ({"text": "ok", "colour": "red"}, "Extra inputs are not permitted"),
        ({"group": "female"}, "Field required"),
        ({"text": 12}, "Input should be a valid string"),
    ],
)
def test_bad_items_are_rejected_with_the_field_named(body: dict, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ClassifyRequest.model_validate(body)
    assert message in str(caught.value)


def test_text_limit_follows_the_setting() -> None:
    short = classify_request_type(20)
    assert short.model_validate({"text": "x" * 20}).text == "x" * 20
    with pytest.raises(ValidationError, match="at most 20 characters"):
        short.model_validate({"text": "x" * 21})
    assert classify_request_type(10_000) is ClassifyRequest


def test_batch_limit_is_enforced_and_named() -> None:
    batch = classify_batch_request_type(ClassifyRequest, 3)
    assert len(batch.model_validate({"items": [{"text": "a"}] * 3}).items) == 3
    with pytest.raises(ValidationError, match="at most 3 items"):
        batch.model_validate({"items": [{"text": "a"}] * 4})
    with pytest.raises(ValidationError, match="at least 1 item"):
        batch.model_validate({"items": []})


def test_single_item_input_is_a_batch_of_one_and_refuses_lists() -> None:
    spec = single_item_input(ClassifyRequest)
    parsed = spec.model_validate({"text": "hello", "group": "male"})
    assert [item.text for item in parsed.root] == ["hello"]
    with pytest.raises(ValidationError, match="send several items to /classify_batch"):
        spec.model_validate([{"text": "a"}, {"text": "b"}])
    schema = spec.model_json_schema()
    assert schema["title"] == "ClassifyRequest" and schema["root_input"] is True


def test_single_result_output_answers_the_one_result() -> None:
    spec = single_result_output()
    result = ClassifyResult.model_validate(RESULT)
    assert spec([result]).model_dump() == result.model_dump()
    with pytest.raises(ValidationError, match="expected the result of one item, got 2"):
        spec([result, result])


def test_blocked_result_has_null_label_and_nullable_schema() -> None:
    result = ClassifyResult.model_validate(RESULT)
    assert result.label is None and result.reasons[0].threshold == 0.8
    schema = ClassifyResult.model_json_schema()
    assert schema["properties"]["label"]["nullable"] is True
    assert "example" in schema and "examples" not in schema  # OpenAPI 3.0 wants `example`


SECRET = "zebra-quartz-marmalade"


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (ClassifyRequest, {"text": SECRET * 1000}),
        (ClassifyRequest, {"text": SECRET, "group": SECRET * 10}),
        (classify_request_type(20), {"text": SECRET}),
        (single_item_input(ClassifyRequest), [SECRET]),
        (single_item_input(ClassifyRequest), {"text": SECRET * 1000}),
        (classify_batch_request_type(ClassifyRequest, 2), {"items": [{"text": SECRET * 1000}]}),
        (classify_batch_request_type(ClassifyRequest, 2), {"items": [{"text": SECRET}] * 3}),
    ],
)
def test_validation_errors_never_quote_the_input(model: type, body: object) -> None:
    """hide_input_in_errors on every model the service validates a body with: the outermost decides."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    assert "input_value" not in str(caught.value)
