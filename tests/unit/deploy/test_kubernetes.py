"""deploy/kubernetes fits together (no cluster here: checked by reading, and promtool)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.setup.deploy_files import DEPLOY

KUBE = DEPLOY / "kubernetes"


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    docs = list(yaml.safe_load_all((KUBE / "fairgate.yaml").read_text(encoding="utf-8")))
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_services_select_the_deployment_pods_on_the_http_port(objects) -> None:
    deployment = objects[("Deployment", "fairgate")]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "http", "containerPort": 3000} in container["ports"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    for name in ("fairgate", "fairgate-pods"):
        service = objects[("Service", name)]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert objects[("Service", "fairgate-pods")]["spec"]["clusterIP"] == "None"


def test_prometheus_finds_every_pod_as_job_fairgate(promtool: Path) -> None:
    config = yaml.safe_load((KUBE / "prometheus.yml").read_text(encoding="utf-8"))
    job = config["scrape_configs"][0]
    assert job["job_name"] == "fairgate"  # the dashboard's instance variable and FairgateDown use it
    assert job["dns_sd_configs"][0]["names"][0].startswith("fairgate-pods.")
    assert job["dns_sd_configs"][0]["port"] == 3000
    done = subprocess.run(
        [str(promtool), "check", "config", str(KUBE / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_replica_points_at_the_redis_service(objects) -> None:
    from urllib.parse import urlsplit

    from fairgate.service.settings import ServiceSettings

    container = objects[("Deployment", "fairgate")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    url = env["FAIRGATE_REDIS_URL"]
    assert ServiceSettings(redis_url=url).redis_url == url
    parsed = urlsplit(url)
    service = objects[("Service", parsed.hostname)]
    assert service["spec"]["ports"][0]["port"] == (parsed.port or 6379)
    redis = objects[("Deployment", "fairgate-redis")]
    pod_labels = redis["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert redis["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    redis_container = redis["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "redis", "containerPort": 6379} in redis_container["ports"]
    assert service["spec"]["ports"][0]["targetPort"] == "redis"
    assert redis_container["image"].startswith("redis:") and not redis_container["image"].endswith(":latest")
    args = redis_container["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert redis["spec"]["replicas"] == 1  # one primary: the windows must not split
