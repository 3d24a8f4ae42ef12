"""The service is assembled from one settings object: a test builds it with other settings."""

from __future__ import annotations

import pytest

from fairgate.service.settings import FairgateSettings, LimitSettings, ServiceSettings


@pytest.fixture(scope="module")
def service_module():
    from fairgate.service import service

    return service


def test_build_service_follows_the_settings(service_module) -> None:
    settings = FairgateSettings(
        service=ServiceSettings(workers=2, max_items=3, max_text_chars=40, max_batch_size=4),
        limits=LimitSettings(max_concurrency=5, request_timeout_s=1.5, retry_after_s=4, max_body_bytes=4096),
    )
    built = service_module.build_service(settings)

    assert built.config["workers"] == 2 and built.config["traffic"]["timeout"] == 60
    assert built.inner.settings is settings
    assert built.apis["classify"].batchable is False and built.apis["classify"].max_batch_size == 4
    request = built.apis["classify_batch"].input_spec.model_json_schema()
    assert request["properties"]["items"]["maxItems"] == 3
    options = {middleware.__name__: kwargs for middleware, kwargs in built.middlewares}
    assert list(options) == ["ApiKeyAuth", "OpenAPIErrors", "Admission", "BodyLimits", "UniformErrors", "ReadinessGate"]
    assert options["Admission"]["max_concurrency"] == 5 and options["Admission"]["timeout_s"] == 1.5
    assert options["Admission"]["retry_after_s"] == 4 and options["ReadinessGate"]["retry_after_s"] == 4
    assert options["BodyLimits"]["max_body_bytes"] == 4096
    # The module's own service is untouched: each build is separate.
    assert service_module.Fairgate.inner.settings is not settings


def test_a_bad_key_file_stops_the_build(service_module, tmp_path) -> None:
    from fairgate.service.auth import AuthError
    from fairgate.service.settings import AuthSettings

    settings = FairgateSettings(auth=AuthSettings(api_keys_file=tmp_path / "missing.txt"))
    with pytest.raises(AuthError, match="FAIRGATE_API_KEYS_FILE=.*cannot read"):
        service_module.build_service(settings)
