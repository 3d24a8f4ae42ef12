"""The admin endpoints on a live server: policy reload, refused policies, window resets, the audit trail.

One server for the module (one worker, an ops key). The reload test changes the policy and
puts the file's policy back at the end (an empty-body reload), so the tests do not depend
on their order.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from loadtests._server import BentoServer
from tests.helpers.error_shape import assert_error_shape
from tests.integration.reliability._server import Texts, metric_samples

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]

OPS_KEY = "fg-test-admin-ops-key-Q8vW2mZr"
OPS = {"Authorization": f"Bearer {OPS_KEY}"}


@pytest.fixture(scope="module")
def policy_file(texts: Texts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This server's own copy of the policy file, so the SIGHUP test can rewrite it."""
    path = tmp_path_factory.mktemp("admin-policy") / "policy.yaml"
    path.write_text(texts.policy.read_text(encoding="utf-8"), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(start_server, policy_file: Path) -> Iterator[BentoServer]:
    server = start_server("admin", FAIRGATE_OPS_API_KEYS=OPS_KEY, FAIRGATE_POLICY=str(policy_file))
    server.wait_ready(headers=OPS)
    yield server


def _metric(server: BentoServer, name: str, **labels: str) -> float:
    return sum(
        value
        for sample, found, value in metric_samples(server.url, headers=OPS)
        if sample == name and all(found.get(k) == v for k, v in labels.items())
    )


def _action(client: httpx.Client, server: BentoServer, text: str, group: str | None = None) -> str:
    response = client.post(server.url + "/classify", json={"text": text, "group": group})
    assert response.status_code == 200, response.text
    return str(response.json()["action"])


def _stricter_policy(texts: Texts, guard_scores: dict[str, float], version: str) -> str:
    """The reliability policy with a block threshold under the lowest text's score."""
    low, mid = guard_scores[texts.allow], guard_scores[texts.flag]
    gap = mid - low
    policy = yaml.safe_load(texts.policy.read_text(encoding="utf-8"))
    policy["version"] = version
    policy["toxicity"]["categories"]["toxicity"] = {"flag": round(low - 0.75 * gap, 7), "block": round(low - 0.5 * gap, 7)}
    return yaml.safe_dump(policy)


def test_a_reload_changes_decisions_and_policy_info_and_is_audited(
    server: BentoServer, texts: Texts, guard_scores: dict[str, float]
) -> None:
    with httpx.Client(timeout=30) as client:
        assert _action(client, server, texts.allow) == "allow"
        stricter = _stricter_policy(texts, guard_scores, "reliability-2")
        answer = client.post(server.url + "/admin/policy", content=stricter, headers={**OPS, "content-type": "application/yaml"})
        assert answer.status_code == 200, answer.text
        reloaded = answer.json()
        assert (reloaded["previous_version"], reloaded["version"]) == (texts.version, "reliability-2")
        # Only a toxicity threshold moved: the rate monitor keeps its windows.
        assert reloaded["kept"] == ["blocked"] and reloaded["reset"] == [] and reloaded["window_scope"] == "worker"

        assert _action(client, server, texts.allow) == "block"  # the text it allowed a moment ago
        assert client.get(server.url + "/guardrails/status").json()["policy_version"] == "reliability-2"
        assert _metric(server, "fairgate_policy_info", version="reliability-2") == 1
        assert _metric(server, "fairgate_policy_info", version=texts.version) == 0

        # A bad policy is refused naming key, value and fix; the new one keeps serving.
        bad = yaml.safe_load(stricter)
        bad["version"], bad["rates"]["window"]["size"] = "reliability-bad", 0
        refused = client.post(server.url + "/admin/policy", content=yaml.safe_dump(bad), headers=OPS)
        error = assert_error_shape(refused, 422).error
        assert "rates.window.size" in error and "raise it" in error and "keeps serving" in error
        not_yaml = client.post(server.url + "/admin/policy", content=b"version: [unclosed", headers=OPS)
        assert "not valid YAML" in assert_error_shape(not_yaml, 400).error
        assert client.get(server.url + "/guardrails/status").json()["policy_version"] == "reliability-2"
        assert _action(client, server, texts.allow) == "block"

        # The audit trail names who changed what; decisions carry no raw text (not stored).
        events = client.get(server.url + "/admin/audit/events", headers=OPS).json()["events"]
        change = next(e["event"] for e in events if e["event"]["new_version"] == "reliability-2")
        assert change["kind"] == "policy_change" and change["old_version"] == texts.version
        assert change["who"].startswith("key-") and OPS_KEY not in change["who"]
        page = client.get(server.url + "/admin/audit", params={"limit": 1, "action": "block"}, headers=OPS).json()
        assert len(page["records"]) == 1 and page["next_before_id"] is not None
        record = page["records"][0]["record"]
        assert record["policy_version"] == "reliability-2" and record["text"] is None
        older = client.get(
            server.url + "/admin/audit", params={"limit": 1, "before_id": page["next_before_id"]}, headers=OPS
        ).json()
        assert older["records"][0]["id"] < page["records"][0]["id"]

        # An empty body re-reads FAIRGATE_POLICY: the file's policy is back.
        back = client.post(server.url + "/admin/policy", headers=OPS)
        assert back.status_code == 200 and back.json()["version"] == texts.version, back.text
        assert _action(client, server, texts.allow) == "allow"


def test_reset_empties_the_named_windows_only(server: BentoServer, texts: Texts) -> None:
    with httpx.Client(timeout=30) as client:
        for group in ("female", "male", "female", "male"):
            _action(client, server, texts.flag, group)

        def counts() -> dict[str, int]:
            status = client.get(server.url + "/guardrails/status").json()
            monitor = next(m for m in status["guardrails"]["monitors"] if m["name"] == "blocked")
            return {g["group"]: g["n"] for g in monitor["groups"]}

        before = counts()
        assert before["female"] >= 2 and before["male"] >= 2
        reset = client.post(server.url + "/admin/windows/reset", json={"monitor": "blocked", "group": "female"}, headers=OPS)
        assert reset.status_code == 200, reset.text
        assert reset.json()["emptied"] == [{"monitor": "blocked", "group": "female"}]
        after = counts()
        assert after["female"] == 0 and after["male"] == before["male"]
        unknown = client.post(server.url + "/admin/windows/reset", json={"monitor": "nope"}, headers=OPS)
        assert "the policy has blocked" in assert_error_shape(unknown, 404).error
        assert client.post(server.url + "/admin/check", headers=OPS).status_code == 200


def test_admin_needs_the_ops_key_and_refusals_are_counted(server: BentoServer) -> None:
    with httpx.Client(timeout=30) as client:
        invalid_before = _metric(server, "fairgate_auth_failures_total", reason="invalid")
        body_before = _metric(server, "fairgate_shed_total", reason="body")
        assert_error_shape(client.post(server.url + "/admin/policy"), 401)
        wrong = client.post(server.url + "/admin/check", headers={"Authorization": "Bearer not-the-ops-key-123456"})
        assert "FAIRGATE_OPS_API_KEYS" in assert_error_shape(wrong, 401).error
        assert _metric(server, "fairgate_auth_failures_total", reason="invalid") == invalid_before + 1
        refused = client.post(server.url + "/classify", content=b"text", headers={"content-type": "text/plain"})
        assert_error_shape(refused, 415)
        assert _metric(server, "fairgate_shed_total", reason="body") == body_before + 1
        spec = client.get(server.url + "/docs.json").json()
        reload_doc = spec["paths"]["/admin/policy"]["post"]["responses"]
        assert {"401", "403", "422"} <= set(reload_doc)
        assert reload_doc["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/FairgateError"}


def test_sighup_to_a_worker_reloads_its_policy_file(
    server: BentoServer, texts: Texts, guard_scores: dict[str, float], policy_file: Path
) -> None:
    original = policy_file.read_text(encoding="utf-8")
    with httpx.Client(timeout=30) as client:

        def version_after_hup() -> str:
            worker = client.get(server.url + "/guardrails/status").json()["worker"]["pid"]
            os.kill(worker, signal.SIGHUP)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                version = str(client.get(server.url + "/guardrails/status").json()["policy_version"])
                if version != texts.version or policy_file.read_text(encoding="utf-8") == original:
                    return version
                time.sleep(0.1)
            return version

        try:
            policy_file.write_text(_stricter_policy(texts, guard_scores, "reliability-hup"), encoding="utf-8")
            assert version_after_hup() == "reliability-hup"
            assert _action(client, server, texts.allow) == "block"
        finally:
            policy_file.write_text(original, encoding="utf-8")
            restored = client.post(server.url + "/admin/policy", headers=OPS)
        assert restored.status_code == 200 and restored.json()["version"] == texts.version
        events = client.get(server.url + "/admin/audit/events", headers=OPS).json()["events"]
        assert any(e["event"]["who"] == "SIGHUP" and e["event"]["new_version"] == "reliability-hup" for e in events)
