"""The committed Grafana dashboard is the generator's output and queries real series."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.setup.deploy_files import DASHBOARD_JSON, DEPLOY, PROMETHEUS, ROOT, load_script

pytest.importorskip("grafana_foundation_sdk", reason="install the [deploy] extra: pip install grafana-foundation-sdk")


@pytest.fixture(scope="module")
def generator():
    return load_script(DEPLOY / "grafana" / "dashboard.py")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_JSON.read_text(encoding="utf-8"))


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _contract_metrics() -> set[str]:
    """The public metrics: the README's table (the one metrics table; the docs link to it)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Metrics")[1].split("\n## ")[0]
    return set(re.findall(r"^\| `(fairgate_[a-z_]+)` \|", section, flags=re.MULTILINE))


def _recorded() -> set[str]:
    names = set()
    for path in (PROMETHEUS / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {r["record"] for r in group["rules"] if "record" in r}
    return names


def test_committed_json_is_what_the_generator_writes(generator) -> None:
    assert DASHBOARD_JSON.read_text(encoding="utf-8") == generator.render(), (
        "stale dashboard: run .venv/bin/python deploy/grafana/dashboard.py"
    )


def test_check_flag_catches_a_hand_edit(generator, tmp_path, capsys) -> None:
    edited = tmp_path / "fairgate.json"
    edited.write_text(DASHBOARD_JSON.read_text().replace("Request rate", "Requests"))
    assert generator.main(["--output", str(edited), "--check"]) == 1
    assert "stale" in capsys.readouterr().err


def test_panels_cover_what_operators_need(dashboard) -> None:
    titles = " | ".join(p["title"] for p in _panels(dashboard)).lower()
    for needed in (
        "request rate",
        "latency percentiles",
        "decisions by action and reason",
        "toxicity score distribution",
        "classifier outcome rate per group",
        "impact ratio per group",
        "flag and block rate per group",
        "alerts",
        "model and policy versions",
        "shed requests by reason",
        "shed share",
        "queue depth",
        "counterfactual gap per kind",
        "counterfactual flip rate per kind",
    ):
        assert needed in titles, f"no panel for {needed!r}"


def test_variables_for_instance_and_group(dashboard) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance", "group"} <= set(variables)
    for name in ("instance", "group"):
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    assert "fairgate" in variables["instance"]["query"]
    assert variables["group"]["query"] == "label_values(fairgate_outcomes_total, group)"


def test_every_panel_queries_prometheus_with_known_series(dashboard) -> None:
    known = _contract_metrics()
    assert len(known) == 28, known  # the README's table, parsed
    recorded = _recorded()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel.get("targets"), f"{panel['title']} has no query"
        for target in panel["targets"]:
            expr = target["expr"]
            for name in re.findall(r"\bfairgate_[a-z_]+", expr):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                base = base if base in known else re.sub(r"_total$", "", base)
                assert base in known or f"{base}_total" in known or name in known, (
                    f"{panel['title']}: {name} is not a contract metric"
                )
            for name in re.findall(r"\bfairgate:[a-z0-9_:]+", expr):
                assert name in recorded, f"{panel['title']}: {name} is not a recording rule"
            for name in re.findall(r"\bbentoml_[a-z_]+", expr):
                assert name.startswith(("bentoml_service_request_total", "bentoml_service_request_duration_seconds")), (
                    name
                )


def test_threshold_line_is_the_policy_bound(dashboard) -> None:
    from fairgate.guardrails.policy import Policy

    bound = Policy.default().rates.impact_ratio.min
    panel = next(p for p in _panels(dashboard) if p["title"].startswith("Impact ratio per group"))
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == bound
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"
    assert any(t["expr"] == "fairgate:policy_impact_ratio_min" for t in panel["targets"])
