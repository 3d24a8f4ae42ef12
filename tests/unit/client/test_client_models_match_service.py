"""The client's result models and the service's schemas describe the same JSON.

fairgate.client defines its own models (it must not import the service, which pulls in
BentoML), so this test is what keeps them in step: same fields, same JSON Schema per field
(types, enums, nullability), and the service's own examples and a fully populated status
parse into the client's models and come back unchanged. A field added to the service
fails here until the client mirrors it.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from fairgate.client import models as client
from fairgate.guardrails import decision
from fairgate.service import schemas as service

PAIRS: list[tuple[type[BaseModel], type[BaseModel]]] = [
    (client.ClassifyResult, service.ClassifyResult),
    (client.Reason, decision.Reason),
    (client.GuardrailsStatus, service.GuardrailsStatusResponse),
    (client.WorkerInfo, service.WorkerInfo),
    (client.ModelInfo, service.ModelInfo),
    (client.GuardStatus, decision.GuardStatus),
    (client.MonitorStatus, decision.MonitorStatus),
    (client.GroupStatus, decision.GroupStatus),
    (client.ClassifyItem, service.ClassifyRequest),
    (client.CounterfactualStatus, decision.CounterfactualStatus),
    (client.CounterfactualKindStatus, decision.CounterfactualKindStatus),
    (client.CounterfactualModelStatus, decision.CounterfactualModelStatus),
    (client.GroupCount, decision.GroupCount),
]
# Words about a field, not its shape.
_PROSE = {"title", "description", "example", "examples", "nullable", "default", "maxLength", "minLength", "pattern"}


def _shape(schema: Any) -> Any:
    """A JSON Schema without its prose and defaults (and the server-side text limits)."""
    if isinstance(schema, dict):
        return {key: _shape(value) for key, value in schema.items() if key not in _PROSE}
    if isinstance(schema, list):
        return [_shape(value) for value in schema]
    return schema


@pytest.mark.parametrize(("mine", "theirs"), PAIRS, ids=[pair[0].__name__ for pair in PAIRS])
def test_same_fields_with_the_same_json_shape(mine: type[BaseModel], theirs: type[BaseModel]) -> None:
    assert set(mine.model_fields) == set(theirs.model_fields), f"mirror {theirs.__module__}.{theirs.__name__}"
    mine_props = mine.model_json_schema(mode="serialization")["properties"]
    theirs_props = theirs.model_json_schema(mode="serialization")["properties"]
    for name in theirs.model_fields:
        if mine is client.ClassifyItem and name == "text":
            continue  # the server's text type carries its (configurable) limits; the client sends any str
        assert _shape(mine_props[name]) == _shape(theirs_props[name]), f"{theirs.__name__}.{name}"


def _example(model: type[BaseModel]) -> dict[str, Any]:
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict)
    return extra["example"]  # type: ignore[return-value]


def test_the_services_result_example_parses_unchanged() -> None:
    example = _example(service.ClassifyResult)
    assert client.ClassifyResult.model_validate(example).model_dump(mode="json") == (
        service.ClassifyResult.model_validate(example).model_dump(mode="json")
    )
    assert client.ClassifyItem.model_validate(_example(service.ClassifyRequest))


def _full_status() -> service.GuardrailsStatusResponse:
    group = decision.GroupStatus(
        group="female", n=120, positives=30, rate=0.25, impact_ratio=0.7, ratio_upper=0.78,
        parity_difference=0.1, status="alert", alert=True, evidence=1.3, evidence_against="male",
    )
    monitor = decision.MonitorStatus(
        name="guard_block", source="guard", outcome="block", harm="high_rate", method="sequential", reference=None,
        alerts_raised=1, checks=9, active=["female"], checked=True,
        groups=[group, group.model_copy(update={"group": "male", "impact_ratio": None, "alert": False})],
    )
    probed = decision.CounterfactualModelStatus(
        model="guard", probes=4, variants=20, mean_gap=0.12, max_gap=0.4, flips=3, flip_rate=0.15
    )
    counterfactual = decision.CounterfactualStatus(
        enabled=True, sample=0.05, max_variants_per_batch=64, sampled=9, errors=0,
        kinds=[decision.CounterfactualKindStatus(
            kind="religion", items=4, skipped=1,
            models=[probed, probed.model_copy(update={"model": "classifier", "mean_gap": None, "flip_rate": None})],
            unfavoured=[decision.GroupCount(group="muslim", count=2)],
        )],
    )
    guard = decision.GuardStatus(
        policy_version="3", enabled=True, toxicity_enabled=True, rates_enabled=True,
        window_scope="fleet", degraded=True, monitors=[monitor], counterfactual=counterfactual,
    )
    return service.GuardrailsStatusResponse(
        ready=True, worker=service.WorkerInfo(pid=42, index=2, workers=2), policy_path="/p.yaml",
        policy_version="3", shared_tokenization=True, guardrails=guard,
        models=[service.ModelInfo(role="guard", tag="fairgate-toxicity:x", variant="fp32", task="toxicity",
                                  labels=["toxicity"])],
    )


def test_a_fully_populated_status_parses_unchanged() -> None:
    status = _full_status()
    parsed = client.GuardrailsStatus.model_validate_json(status.model_dump_json())
    assert parsed.model_dump(mode="json") == status.model_dump(mode="json")
    assert parsed.window_scope == "fleet" and parsed.degraded  # copied up from the guard by the service


def test_a_blocked_result_with_reasons_parses_unchanged() -> None:
    reason = decision.Reason(monitor="toxicity", stage="input", code="toxicity_threat", action="block",
                             category="threat", value=0.93, threshold=0.8, message="threat 0.930 >= 0.8")
    result = service.ClassifyResult(request_id="r", label=None, scores={}, action="block", reasons=[reason],
                                    toxicity={"threat": 0.93}, groups=["none"])
    parsed = client.ClassifyResult.model_validate_json(result.model_dump_json())
    assert parsed.model_dump(mode="json") == result.model_dump(mode="json")
    assert parsed.blocked and not parsed.flagged


def test_unknown_fields_from_a_newer_server_are_ignored() -> None:
    example = {**_example(service.ClassifyResult), "new_field": 1}
    assert client.ClassifyResult.model_validate(example).request_id == example["request_id"]
