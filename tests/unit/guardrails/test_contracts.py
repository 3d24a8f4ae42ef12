"""The shared vocabularies have one definition (fairgate.guardrails.contracts) that every package uses."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from fairgate.guardrails import contracts, decision, onnx_model, policy
from fairgate.models import evaluation
from fairgate.models import guard as guard_models
from fairgate.models.guard import _categories

REPO = Path(__file__).resolve().parents[3]


def test_toxicity_categories_are_detoxifys_six_in_the_guard_order() -> None:
    assert contracts.TOXICITY_CATEGORIES == (
        "toxicity",
        "severe_toxicity",
        "obscene",
        "threat",
        "insult",
        "identity_attack",
    )


def test_every_package_uses_the_one_category_tuple() -> None:
    assert guard_models.CATEGORIES is contracts.TOXICITY_CATEGORIES
    assert _categories.CATEGORIES is contracts.TOXICITY_CATEGORIES
    assert policy.TOXICITY_CATEGORIES is contracts.TOXICITY_CATEGORIES


@pytest.mark.parametrize(
    "script", ["models/data/toxicity/assemble.py", "models/data/identity_eval/make_identity_eval.py"]
)
def test_standalone_data_scripts_use_the_one_category_tuple(script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"_contracts_{Path(script).stem}"
    spec = importlib.util.spec_from_file_location(name, REPO / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    assert module.LABELS is contracts.TOXICITY_CATEGORIES


def test_actions_stages_and_severity_have_one_definition() -> None:
    assert get_args(contracts.Action) == ("allow", "flag", "block")
    assert get_args(contracts.Stage) == ("input", "output", "review")
    assert get_args(contracts.ScreenStage) == ("input", "output")
    assert decision.Action is contracts.Action
    assert policy.Action is contracts.Action
    assert decision.Stage is contracts.Stage
    assert decision.ScreenStage is contracts.ScreenStage
    assert decision.SEVERITY is contracts.SEVERITY
    assert decision.most_severe is contracts.most_severe


def test_severity_order_is_block_over_flag_over_allow() -> None:
    assert sorted(contracts.SEVERITY, key=contracts.SEVERITY.__getitem__) == ["allow", "flag", "block"]
    assert set(contracts.SEVERITY) == set(get_args(contracts.Action))
    assert contracts.most_severe([]) == "allow"
    assert contracts.most_severe(["allow", "flag", "allow"]) == "flag"
    assert contracts.most_severe(["flag", "block", "allow"]) == "block"
    with pytest.raises(TypeError):
        contracts.SEVERITY["allow"] = 5  # type: ignore[index]


LOGITS = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0], [-3.0, 4.0, 1000.0]])


def test_probabilities_match_the_direct_formulas() -> None:
    shifted = LOGITS - LOGITS.max(axis=1, keepdims=True)
    softmax = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    with np.errstate(over="ignore"):
        sigmoid = 1.0 / (1.0 + np.exp(-LOGITS))

    single = contracts.probabilities(LOGITS, "single_label_classification")
    np.testing.assert_allclose(single, softmax)
    np.testing.assert_allclose(single.sum(axis=1), 1.0)
    np.testing.assert_allclose(single[1], [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(contracts.probabilities(LOGITS, "multi_label_classification"), sigmoid)
    np.testing.assert_allclose(contracts.probabilities(np.zeros((1, 2)), "multi_label_classification"), [[0.5, 0.5]])


def test_model_readers_use_the_one_probabilities() -> None:
    assert evaluation.probabilities is contracts.probabilities
    assert evaluation.softmax is contracts.softmax
    assert evaluation.sigmoid is contracts.sigmoid
    assert not hasattr(onnx_model, "_softmax") and not hasattr(onnx_model, "_sigmoid")
