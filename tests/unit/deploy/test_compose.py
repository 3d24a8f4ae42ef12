"""deploy/compose.yaml and the Grafana provisioning fit together (no Docker engine here:
checked by reading)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.setup.deploy_files import DEPLOY


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path (relative to deploy/) of every bind mount."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (DEPLOY / source).resolve()
    return mounts


def test_four_services_and_the_audit_volume_step_with_pinned_images(compose) -> None:
    services = compose["services"]
    assert set(services) == {"fairgate", "fairgate-audit-init", "redis", "prometheus", "grafana"}
    for name, service in services.items():
        image = service["image"]
        assert (":" in image and not image.endswith(":latest")) or name.startswith("fairgate"), image
    assert services["fairgate-audit-init"]["image"] == services["fairgate"]["image"]
    assert services["fairgate"]["ports"] == ["3000:3000"]
    assert "/readyz" in " ".join(services["fairgate"]["healthcheck"]["test"])


def test_every_bind_mount_exists(compose) -> None:
    for name, service in compose["services"].items():
        for target, source in _mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"


def test_prometheus_gets_the_shipped_config_and_scrapes_the_service(compose) -> None:
    prometheus = compose["services"]["prometheus"]
    mounts = _mounts(prometheus)
    assert mounts["/etc/prometheus/prometheus.yml"] == (DEPLOY / "prometheus" / "prometheus.yml").resolve()
    assert mounts["/etc/prometheus/rules"] == (DEPLOY / "prometheus" / "rules").resolve()
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules/*.yml"]  # relative to the config: /etc/prometheus/rules
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "fairgate")
    port = compose["services"]["fairgate"]["ports"][0].split(":")[1]
    assert job["static_configs"][0]["targets"] == [f"fairgate:{port}"]


def test_grafana_provisions_the_datasource_and_the_dashboard(compose) -> None:
    grafana = compose["services"]["grafana"]
    mounts = _mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning/dashboards"]
    provider = yaml.safe_load((provisioning / "fairgate.yml").read_text())["providers"][0]
    dashboards_dir = provider["options"]["path"]
    assert mounts[dashboards_dir] == (DEPLOY / "grafana" / "dashboards").resolve()
    assert (mounts[dashboards_dir] / "fairgate.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_dir}/fairgate.json"
    datasources = mounts["/etc/grafana/provisioning/datasources"]
    source = yaml.safe_load((datasources / "prometheus.yml").read_text())["datasources"][0]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    assert "9090:9090" in compose["services"]["prometheus"]["ports"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape


def test_fairgate_shares_its_windows_in_the_compose_redis(compose) -> None:
    from urllib.parse import urlsplit

    from fairgate.service.settings import ServiceSettings

    fairgate, redis = compose["services"]["fairgate"], compose["services"]["redis"]
    url = fairgate["environment"]["FAIRGATE_REDIS_URL"]
    assert ServiceSettings(redis_url=url).redis_url == url  # the service accepts it at start
    parsed = urlsplit(url)
    assert parsed.hostname == "redis" and (parsed.port or 6379) == 6379
    assert fairgate["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]
    # memory pressure must fail visibly (failover), never evict windows silently
    command = redis["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert "redis-data:/data" in redis["volumes"] and "redis-data" in compose["volumes"]


def test_the_audit_file_is_on_a_named_volume_the_server_user_owns(compose) -> None:
    from bentoml._internal.container.generate import BENTO_HOME, BENTO_USER

    from fairgate.service.audit import default_audit_path

    services = compose["services"]
    fairgate, init = services["fairgate"], services["fairgate-audit-init"]
    env = fairgate["environment"]
    assert env["BENTOML_HOME"] == BENTO_HOME  # what `bentoml containerize` sets in the image
    assert "FAIRGATE_AUDIT_DB" not in env  # the default path, under BENTOML_HOME
    audit_dir = str(default_audit_path(env["BENTOML_HOME"]).parent)
    named = {target: source for source, target in (v.split(":")[:2] for v in fairgate["volumes"])}
    assert audit_dir in named, f"nothing mounted at {audit_dir}, where the audit file is written"
    volume = named[audit_dir]
    assert volume in compose["volumes"] and not volume.startswith(".")  # named, so it outlives containers
    # A new named volume belongs to root: the one-shot step hands it to the image's user first.
    assert f"{volume}:{audit_dir}" in init["volumes"]
    assert init["user"] == "0:0" and init["restart"] == "no"
    assert init["entrypoint"] == ["chown", "-R", f"{BENTO_USER}:{BENTO_USER}", audit_dir]
    assert fairgate["depends_on"]["fairgate-audit-init"]["condition"] == "service_completed_successfully"
