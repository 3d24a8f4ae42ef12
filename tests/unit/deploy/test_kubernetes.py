"""deploy/kubernetes fits together (no cluster here: checked by reading, and promtool).

Every manifest parses, and the references between objects agree: selectors and labels,
port names and numbers, probe paths that BentoML really serves, the audit volume mounted
where the service writes its audit file, the user the image runs as, the autoscaler's
target, the Redis claim.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.setup.deploy_files import DEPLOY

KUBE = DEPLOY / "kubernetes"
MANIFESTS = sorted(KUBE.glob("*.yaml"))


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    docs = list(yaml.safe_load_all((KUBE / "fairgate.yaml").read_text(encoding="utf-8")))
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _pod(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return objects[("StatefulSet", "fairgate")]["spec"]["template"]


def _container(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    (container,) = _pod(objects)["spec"]["containers"]
    return container


def _served_paths() -> set[str]:
    """The operational routes BentoML's HTTP app serves (the same table every fairgate server gets)."""
    from bentoml._internal.server.base_app import BaseAppFactory

    def endpoint(request: object) -> None:
        return None

    stub = SimpleNamespace(livez=endpoint, readyz=endpoint, metrics=endpoint)
    return {route.path for route in BaseAppFactory.get_system_routes(stub)}  # type: ignore[arg-type]


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_every_manifest_parses_into_named_kubernetes_objects(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
        assert doc["metadata"]["name"].startswith("fairgate")
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"].startswith("fairgate")


def test_services_select_the_statefulset_pods_on_the_http_port(objects) -> None:
    statefulset = objects[("StatefulSet", "fairgate")]
    pod_labels = _pod(objects)["metadata"]["labels"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    container = _container(objects)
    assert {"name": "http", "containerPort": 3000} in container["ports"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    for name in ("fairgate", "fairgate-pods"):
        service = objects[("Service", name)]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["ports"][0]["targetPort"] == "http"
    headless = objects[("Service", "fairgate-pods")]
    assert headless["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == "fairgate-pods"  # the StatefulSet's network identity
    assert "replicas" not in statefulset["spec"]  # the autoscaler owns the count


def test_probe_paths_are_served_and_open_to_the_kubelet(objects) -> None:
    from fairgate.service.auth import OPS_PATHS

    served = _served_paths()
    container = _container(objects)
    for probe in ("readinessProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert path in served, f"{probe} {path}: BentoML serves {sorted(served)}"
        assert path in OPS_PATHS  # needs a key only when FAIRGATE_OPS_API_KEYS is set (the comment says how)


def test_resources_are_requested_and_memory_is_limited(objects) -> None:
    for name in ("fairgate", "fairgate-redis"):
        kind = "StatefulSet" if name == "fairgate" else "Deployment"
        (container,) = objects[(kind, name)]["spec"]["template"]["spec"]["containers"]
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), name
        assert "memory" in resources["limits"], name


def test_the_audit_file_is_on_a_claim_per_pod_writable_by_the_image_user(objects) -> None:
    from bentoml._internal.container.generate import BENTO_HOME, BENTO_UID_GID

    from fairgate.service.audit import default_audit_path

    statefulset = objects[("StatefulSet", "fairgate")]
    container = _container(objects)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BENTOML_HOME"] == BENTO_HOME  # what `bentoml containerize` sets in the image
    assert "FAIRGATE_AUDIT_DB" not in env  # the default path, under BENTOML_HOME
    audit_dir = str(default_audit_path(env["BENTOML_HOME"]).parent)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert audit_dir in mounts, f"nothing mounted at {audit_dir}, where the audit file is written"
    (template,) = [t for t in statefulset["spec"]["volumeClaimTemplates"] if t["metadata"]["name"] == mounts[audit_dir]]
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]  # one claim per pod, never shared
    assert template["spec"]["resources"]["requests"]["storage"]
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    security = _pod(objects)["spec"]["securityContext"]
    assert security["runAsUser"] == security["fsGroup"] == BENTO_UID_GID


def test_disruption_budget_and_autoscaler_agree_with_the_statefulset(objects) -> None:
    pod_labels = _pod(objects)["metadata"]["labels"]
    budget = objects[("PodDisruptionBudget", "fairgate")]
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    autoscaler = objects[("HorizontalPodAutoscaler", "fairgate")]
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "StatefulSet", "fairgate")
    assert budget["spec"]["minAvailable"] < autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
    (metric,) = autoscaler["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in _container(objects)["resources"]["requests"]  # utilisation is relative to the request


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

    env = {e["name"]: e.get("value") for e in _container(objects)["env"]}
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


def test_redis_keeps_its_append_only_file_on_a_claim(objects) -> None:
    redis = objects[("Deployment", "fairgate-redis")]
    assert redis["spec"]["strategy"]["type"] == "Recreate"  # the old pod lets go of the claim first
    pod = redis["spec"]["template"]["spec"]
    (mount,) = pod["containers"][0]["volumeMounts"]
    assert mount["mountPath"] == "/data"  # where the image's redis-server writes appendonly files
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = objects[("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_onnx_threads_follow_the_cpu_request(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Without a CPU limit the pod sees the node's cores; its threads come from its request."""
    container = _container(objects)
    env = {e["name"]: e for e in container["env"]}
    source = env["FAIRGATE_CPUS"]["valueFrom"]["resourceFieldRef"]
    assert source["resource"] == "requests.cpu" and source["containerName"] == container["name"]
    assert "cpu" in container["resources"]["requests"]
    assert "FAIRGATE_INTRA_OP_THREADS" not in env, "a fixed thread count would ignore the workers and the overlap"
