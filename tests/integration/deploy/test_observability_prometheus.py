"""The dashboard and the rules, proven against a real Prometheus scraping a real service.

One module-scoped scenario (about a minute and a half on two cores):

1. tiny random models go into this session's private BentoML store;
2. the test scores a pool of texts with the tiny guard itself (fp32, batch-invariant) and
   writes a policy whose flag and block thresholds split that pool, so it knows which
   texts the server will allow, flag and block;
3. ``bentoml serve fairgate.service.service:Fairgate`` starts with that policy, and Prometheus
   (Debian's package, installed by tests/setup/prometheus.sh if missing) starts on
   127.0.0.1, scraping it every second with the committed recording and alerting rules
   plus the policy mirror generated from the test policy;
4. a mixed load goes in: benign, flagged and blocked texts for female, male and
   nonbinary, plus items without a group and with an unknown group. The tiny classifier
   gives every text the same label, so the unequal outcome is the guard's own: nonbinary
   texts are flagged far more often (a biased guard, the case monitor guard_flag exists
   for);
5. then, through Prometheus's HTTP API: every query of every panel of the committed
   dashboard (variables set to "All") and every recording rule returns finite data, the
   FairgateImpactRatioLow expression holds for nonbinary on guard_flag and for no other
   group, and the alert is pending; and /metrics passes ``promtool check metrics``.
"""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

pytestmark = [pytest.mark.server, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD_JSON = ROOT / "deploy" / "grafana" / "dashboards" / "fairgate.json"
GROUPS = ("female", "male", "nonbinary")
UNEQUAL = "nonbinary"
# Items per group: (benign, flagged, blocked). nonbinary's items are flagged or blocked
# 38 times in 54, the others 14 in 54: impact ratio (14/54)/(38/54) = 0.37 < 0.8.
MIX = {"female": (40, 8, 6), "male": (40, 8, 6), "nonbinary": (16, 32, 6)}
MIN_SAMPLES = 30
# Grafana's variables set to "All", and a rate window that covers the whole load.
SUBSTITUTIONS = {
    "$__rate_interval": "5m",
    "$instance": ".*",
    "$group": ".*",
    "$category": ".*",
}


@dataclass(frozen=True)
class Scenario:
    service_url: str
    prometheus: Any
    promtool: Path
    rule_files: list[Path]


def _split_thresholds(scores: list[float]) -> tuple[float, float]:
    """Flag and block thresholds in real gaps of the score distribution (~60th, ~85th pct)."""
    unique = sorted(set(scores))
    assert len(unique) >= 20, f"tiny guard gives too few distinct scores: {len(unique)}"

    def cut(quantile: float) -> float:
        index = int(len(unique) * quantile)
        # The widest gap near the quantile, so float noise cannot move a text across.
        best = max(range(index - 3, index + 3), key=lambda i: unique[i + 1] - unique[i])
        assert unique[best + 1] - unique[best] > 1e-7, f"no usable gap near {quantile}: {unique}"
        return (unique[best] + unique[best + 1]) / 2

    return cut(0.6), cut(0.85)


def _build_policy(path: Path, flag: float, block: float) -> dict[str, Any]:
    policy = {
        "version": "observability-itest-1",
        "groups": {"source": "request", "allowed": list(GROUPS)},
        "toxicity": {
            "categories": {"toxicity": {"flag": round(flag, 9), "block": round(block, 9)}},
            "stages": ["input"],
        },
        "rates": {
            "monitors": [
                # The tiny classifier labels everything "positive": an equal outcome.
                {"name": "positive", "source": "label", "outcome": "positive", "harm": "low_rate"},
                {"name": "guard_flag", "source": "guard", "outcome": "flag", "harm": "high_rate"},
                {"name": "guard_block", "source": "guard", "outcome": "block", "harm": "high_rate"},
            ],
            "window": {"size": 400},
            "min_samples": MIN_SAMPLES,
            "impact_ratio": {"min": 0.8},
            # Sequential exports what the window method does (rates, ratios, the window's
            # confidence bound) plus its evidence, so every "why it fired" panel has data.
            "method": "sequential",
        },
        # Probe every item that names a group, so the counterfactual series grow during the
        # load (rate() over a series that never increased is 0/0 in the mean-gap panel).
        "counterfactual": {"sample": 1.0},
        # A short domain window, so the monitor checks (and sets its share gauge) during the load.
        "domain": {"window": {"size": 50}, "min_samples": 20},
    }
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return policy


@pytest.fixture(scope="module")
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    from tests.setup.prometheus_server import PrometheusServer, require_prometheus

    bin_dir = require_prometheus()

    from fairgate.guardrails.onnx_model import OnnxTextModel
    from fairgate.guardrails.policy import Policy
    from loadtests._server import BentoServer
    from tests.helpers.tiny_models import TINY_WORDS, TinyStore
    from tests.setup.deploy_files import load_script

    work = tmp_path_factory.mktemp("observability")
    # The session's tiny models (tests/integration/conftest.py), built only once Prometheus is known to exist.
    tiny: TinyStore = request.getfixturevalue("tiny_store")

    # Which texts will the server allow, flag and block? Ask the tiny guard itself.
    rng = random.Random(6)
    pool = sorted({" ".join(rng.choice(TINY_WORDS) for _ in range(rng.randint(3, 9))) for _ in range(400)})
    guard = OnnxTextModel.from_directory(tiny.guard_path, variant="fp32")
    scores = dict(zip(pool, (float(row[0]) for row in guard.predict_proba(pool)), strict=True))
    flag, block = _split_thresholds(list(scores.values()))
    kinds = {
        "benign": [t for t in pool if scores[t] < flag],
        "flagged": [t for t in pool if flag <= scores[t] < block],
        "blocked": [t for t in pool if scores[t] >= block],
    }
    assert all(len(texts) >= 10 for texts in kinds.values()), {k: len(v) for k, v in kinds.items()}
    policy_file = work / "policy.yaml"
    _build_policy(policy_file, flag, block)

    policy_rules = load_script(PROMETHEUS_DIR / "policy_rules.py")
    mirror = work / "fairgate-policy.yml"
    mirror.write_text(policy_rules.render(Policy.from_yaml(policy_file), source=str(policy_file)))
    rule_files = [
        mirror,
        PROMETHEUS_DIR / "rules" / "fairgate-recording.yml",
        PROMETHEUS_DIR / "rules" / "fairgate-alerts.yml",
    ]

    env = {
        "FAIRGATE_CLASSIFIER_TAG": tiny.classifier_tag,
        "FAIRGATE_GUARD_TAG": tiny.guard_tag,
        "FAIRGATE_POLICY": str(policy_file),
        "FAIRGATE_ONNX_VARIANT": "fp32",
        "FAIRGATE_INTRA_OP_THREADS": "1",
        "FAIRGATE_WORKERS": "1",
    }
    server = BentoServer(env=env, log_path=work / "serve.log").start()
    try:
        server.wait_ready(timeout_s=120)
        target = server.url.removeprefix("http://")
        with PrometheusServer(
            bin_dir=bin_dir,
            targets=[target],
            rule_files=rule_files,
            base_config=PROMETHEUS_DIR / "prometheus.yml",
            interval_s=1.0,
        ) as prometheus:
            prometheus.wait_for_scrape_after(time.time())
            _send_load(server.url, kinds, prometheus)
            _wait_for_rules(prometheus)
            yield Scenario(
                service_url=server.url,
                prometheus=prometheus,
                promtool=bin_dir / "promtool",
                rule_files=rule_files,
            )
    finally:
        server.stop()


def _classify(client: httpx.Client, url: str, text: str, group: str | None) -> dict[str, Any]:
    response = client.post(url + "/classify", json={"text": text, "group": group}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _send_load(url: str, kinds: dict[str, list[str]], prometheus: Any) -> None:
    """Warm every series up, let Prometheus see it, then send the mixed load."""
    items: list[tuple[str, str | None, str]] = []  # (text, group, expected action)
    action = {"benign": "allow", "flagged": "flag", "blocked": "block"}
    for group, counts in MIX.items():
        for kind, count in zip(("benign", "flagged", "blocked"), counts, strict=True):
            texts = kinds[kind]
            items += [(texts[i % len(texts)], group, action[kind]) for i in range(count)]
    # Items with no group and with a group outside the policy (counted as "other").
    items += [(kinds["benign"][i], None, "allow") for i in range(8)]
    items += [(kinds["flagged"][i], "martian", "flag") for i in range(4)]
    # Benign texts that name groups of several kinds: the probe's series are created in the
    # warm-up below and grow during the load.
    naming = [t for t in kinds["benign"] if any(w in t.split() for w in ("women", "muslim", "black", "gay", "old"))]
    assert naming, "no benign pool text names a group"
    items += [(naming[i % len(naming)], None, "allow") for i in range(12)]
    random.Random(7).shuffle(items)

    with httpx.Client() as client:
        # Counters are created by their first increment; rate() needs a sample before
        # the increase, so create each (group, outcome) series first and let it be scraped.
        for group in (*GROUPS, None):
            for kind in ("benign", "flagged", "blocked"):
                _classify(client, url, kinds[kind][0], group)
        for text in naming:
            _classify(client, url, text, None)
        prometheus.wait_for_scrape_after(time.time())
        with futures.ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda item: _classify(client, url, item[0], item[1]), items))
    actions = [r["action"] for r in results]
    expected = [item[2] for item in items]
    # The tiny guard decides exactly as the test computed (the rate monitor may add flags
    # to the unequal group's allowed items once it alerts, never remove one).
    mismatched = [
        (e, a) for e, a in zip(expected, actions, strict=True) if not (e == a or (e == "allow" and a == "flag"))
    ]
    assert not mismatched, f"{len(mismatched)} decisions differ from the test's computation: {mismatched[:5]}"


def _wait_for_rules(prometheus: Any, timeout_s: float = 60.0) -> None:
    """Until the fleet-wide impact ratio of the unequal group has been recorded."""
    deadline = time.monotonic() + timeout_s
    expr = f'fairgate:impact_ratio:ratio_rate1h{{monitor="guard_flag", group="{UNEQUAL}"}}'
    while time.monotonic() < deadline:
        if prometheus.query(expr):
            time.sleep(3)  # a few more scrapes and evaluations past the load's end
            return
        time.sleep(1)
    raise AssertionError(f"{expr} never appeared; Prometheus log:\n{prometheus.log_tail()}")


def _finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD_JSON.read_text(encoding="utf-8"))
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in SUBSTITUTIONS.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"unsubstituted variable in {panel['title']}: {expr}"
            queries.append((panel["title"], expr))
    return queries


def test_scrape_target_is_up(scenario: Scenario) -> None:
    assert scenario.prometheus.targets_health() == ["up"]


def test_every_dashboard_query_returns_data(scenario: Scenario) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 20
    empty = []
    for title, expr in queries:
        result = scenario.prometheus.query(expr)
        if not _finite(result):
            empty.append(f"{title}: {expr} -> {result[:2]}")
    assert not empty, "panel queries without finite data:\n" + "\n".join(empty)


def test_every_recording_rule_returns_data(scenario: Scenario) -> None:
    records = []
    for path in scenario.rule_files:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            records += [rule["record"] for rule in group["rules"] if "record" in rule]
    assert len(set(records)) >= 20
    empty = [name for name in dict.fromkeys(records) if not _finite(scenario.prometheus.query(name))]
    assert not empty, f"recording rules without finite data: {empty}"


def test_fleet_impact_ratio_matches_the_load(scenario: Scenario) -> None:
    ratios = {
        s["metric"]["group"]: float(s["value"][1])
        for s in scenario.prometheus.query('fairgate:impact_ratio:ratio_rate5m{monitor="guard_flag"}')
    }
    # female/male are the reference (ratio 1); nonbinary about (14/54)/(38/54) = 0.37.
    # Warm-up items and rate() extrapolation move the figures a little, not across 0.8.
    assert set(ratios) == set(GROUPS), ratios  # none excluded, "other" below min_samples
    assert ratios[UNEQUAL] < 0.6, ratios
    assert all(ratios[g] > 0.9 for g in GROUPS if g != UNEQUAL), ratios


def test_impact_ratio_alert_expression_holds_for_the_unequal_group_only(scenario: Scenario) -> None:
    alerts = yaml.safe_load((PROMETHEUS_DIR / "rules" / "fairgate-alerts.yml").read_text(encoding="utf-8"))
    rule = next(r for g in alerts["groups"] for r in g["rules"] if r.get("alert") == "FairgateImpactRatioLow")
    result = scenario.prometheus.query(rule["expr"])
    holding = {(s["metric"]["monitor"], s["metric"]["group"]) for s in result}
    assert holding == {("guard_flag", UNEQUAL)}, result
    # Prometheus evaluates the rule too: pending (for: 15m), for that group alone.
    pending = scenario.prometheus.query('ALERTS{alertname="FairgateImpactRatioLow"}')
    assert {(s["metric"]["group"], s["metric"]["alertstate"]) for s in pending} == {(UNEQUAL, "pending")}


def test_live_metrics_pass_promtool_check_metrics(scenario: Scenario) -> None:
    body = httpx.get(scenario.service_url + "/metrics", timeout=10).content
    names = set(re.findall(rb"^(fairgate_[a-z_]+)", body, flags=re.MULTILINE))
    assert len(names) >= 12, names
    done = subprocess.run(
        [str(scenario.promtool), "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    lines = (done.stdout + done.stderr).decode().splitlines()
    assert [line for line in lines if "fairgate_" in line] == []
