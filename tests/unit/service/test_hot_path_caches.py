"""The per-request shortcuts of the hot path answer exactly what the long way answers.

loadtests/profile_edge.py found the extra CPU per request in copies of cached JSON schemas
(BentoML asks for the schema twice per request) and in the edge; these check that the
shortcuts taken there change no answer.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from _bentoml_sdk.io_models import IODescriptor, IORootModel
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from fairgate.service._io import batch_result_output, single_item_input, single_result_output
from fairgate.service.edge.body import json_depth_exceeds
from fairgate.service.edge.metrics import EdgeMetrics
from fairgate.service.schemas import classify_request_type

ITEM = classify_request_type(500)
SPECS = [single_item_input(ITEM), single_result_output(), batch_result_output()]


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.__name__)
def test_cached_schema_is_a_fresh_equal_copy_each_call(spec: type[IORootModel[Any]]) -> None:
    first = spec.model_json_schema()
    first["properties"] = "edited"
    first.pop("type", None)
    second = spec.model_json_schema()
    assert second != first
    assert second == spec.model_json_schema()
    assert second is not spec.model_json_schema()


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.__name__)
def test_mime_type_is_bentomls_answer(spec: type[IORootModel[Any]]) -> None:
    assert spec.mime_type() == IODescriptor.mime_type.__func__(spec) == "application/json"


def test_body_parsing_matches_bentomls_for_good_and_bad_bodies() -> None:
    spec = SPECS[0]
    parsed = spec.model_validate_json(b'{"text": "the food was great", "group": "female"}')
    assert parsed.root[0].text == "the food was great"
    assert parsed.root[0].group == "female"
    with pytest.raises(ValidationError, match="must be one JSON object"):
        spec.model_validate_json(b'[{"text": "a"}]')
    with pytest.raises(json.JSONDecodeError):
        spec.model_validate_json(b'{"text": ')


def test_depth_shortcut_agrees_with_the_scan() -> None:
    def scan(body: bytes, limit: int) -> bool:
        depth, in_string, escaped = 0, False, False
        for byte in body:
            if in_string:
                if escaped:
                    escaped = False
                elif byte == 0x5C:
                    escaped = True
                elif byte == 0x22:
                    in_string = False
            elif byte == 0x22:
                in_string = True
            elif byte in (0x5B, 0x7B):
                depth += 1
                if depth > limit:
                    return True
            elif byte in (0x5D, 0x7D):
                depth -= 1
        return False

    rng = random.Random(7)
    alphabet = b'[]{}"\\ab,:'
    for _ in range(3000):
        body = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        for limit in (0, 1, 2, 4, 8):
            assert json_depth_exceeds(body, limit) == scan(body, limit), (body, limit)


def test_queue_gauge_follows_every_change() -> None:
    registry = CollectorRegistry()
    metrics = EdgeMetrics(registry=registry)
    for depth in (0, 3, 3, 1, 0, 0, 5):
        metrics.queue_items(depth)
        assert registry.get_sample_value("fairgate_queue_items") == depth
