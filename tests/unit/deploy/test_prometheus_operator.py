"""The Prometheus Operator objects are generated from the plain Prometheus files and fit fairgate.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.setup.deploy_files import DEPLOY, PROMETHEUS, RULE_FILES, load_script

KUBE = DEPLOY / "kubernetes"


@pytest.fixture(scope="module")
def generator():
    return load_script(KUBE / "prometheus_operator.py")


@pytest.fixture(scope="module")
def committed() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((KUBE / "prometheus-operator.yaml").read_text(encoding="utf-8"))
    return {doc["kind"]: doc for doc in docs}


def test_committed_file_is_the_generators_output(generator) -> None:
    committed = (KUBE / "prometheus-operator.yaml").read_text(encoding="utf-8")
    assert committed == generator.render(), "run: .venv/bin/python deploy/kubernetes/prometheus_operator.py"


def test_the_prometheus_rule_holds_every_group_of_the_rule_files_unchanged(committed) -> None:
    expected = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]]
    rule = committed["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == expected
    assert {g["name"] for g in expected} >= {"fairgate-alerts", "fairgate-policy"}


def test_the_service_monitor_scrapes_each_pod_once_as_job_fairgate(committed) -> None:
    monitor = committed["ServiceMonitor"]["spec"]
    services = [
        doc for doc in yaml.safe_load_all((KUBE / "fairgate.yaml").read_text(encoding="utf-8"))
        if doc["kind"] == "Service"
    ]
    selected = [s for s in services if monitor["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == ["fairgate-pods"]  # headless: one target per pod
    (service,) = selected
    assert service["metadata"]["labels"][monitor["jobLabel"]] == "fairgate"  # the job the alerts and dashboard use
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    job = next(j for j in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]
               if j["job_name"] == "fairgate")
    assert (endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]) == (
        job["metrics_path"], job["scrape_interval"], job["scrape_timeout"]
    )


def test_a_group_name_in_two_rule_files_is_refused(generator, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("a.yml", "b.yml"):
        (rules / name).write_text("groups:\n  - name: same\n    rules: []\n", encoding="utf-8")
    with pytest.raises(generator.OperatorFilesError, match=r"\['same'\] appear in more than one file.*rename one"):
        generator.rule_groups(rules)


def test_check_mode_reports_a_stale_file(generator, tmp_path: Path, capsys) -> None:
    stale = tmp_path / "prometheus-operator.yaml"
    stale.write_text("old\n", encoding="utf-8")
    assert generator.main(["--check", "--output", str(stale)]) == 1
    assert "is stale" in capsys.readouterr().err
    assert generator.main(["--output", str(stale)]) == 0
    assert generator.main(["--check", "--output", str(stale)]) == 0
