"""API keys on a live server: inference and status need a key, ops endpoints their own."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from loadtests._server import BentoServer
from tests.helpers.error_shape import assert_error_shape
from tests.integration.reliability._server import Texts

pytestmark = [pytest.mark.server, pytest.mark.timeout(180)]

API_KEY = "fg-test-api-key-7Hq2xN0pLr"
SECOND_KEY = "fg-test-second-key-Kd81wQ"
OPS_KEY = "fg-test-ops-key-Zt5mV3cYb"


@pytest.fixture(scope="module")
def server(start_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BentoServer]:
    keys = tmp_path_factory.mktemp("keys") / "ops_keys.txt"
    keys.write_text(f"# scraper\n{OPS_KEY}\n", encoding="utf-8")
    server = start_server(
        "api-keys",
        FAIRGATE_API_KEYS=f"{API_KEY},{SECOND_KEY}",
        FAIRGATE_OPS_API_KEYS_FILE=str(keys),
    )
    server.wait_ready(headers={"X-API-Key": OPS_KEY})  # /readyz needs the ops key here
    yield server


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", "/classify", {"text": "x"}), ("POST", "/classify_batch", {"items": [{"text": "x"}]}), ("GET", "/guardrails/status", None)],
)
def test_inference_and_status_need_an_api_key(server: BentoServer, texts: Texts, method: str, path: str, body: object) -> None:
    if body is not None and "text" in body:
        body = {"text": texts.allow}
    with httpx.Client(timeout=30) as client:
        anonymous = client.request(method, server.url + path, json=body)
        wrong = client.request(method, server.url + path, json=body, headers={"Authorization": "Bearer not-a-key-at-all-123"})
        ops = client.request(method, server.url + path, json=body, headers={"X-API-Key": OPS_KEY})
        good = client.request(method, server.url + path, json=body, headers={"Authorization": f"Bearer {API_KEY}"})
        second = client.request(method, server.url + path, json=body, headers={"X-API-Key": SECOND_KEY})
    assert [anonymous.status_code, wrong.status_code, ops.status_code] == [401, 401, 401]
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    for rejected in (anonymous, wrong, ops):
        assert "missing or invalid API key" in assert_error_shape(rejected, 401).error
    assert good.status_code == 200 and second.status_code == 200, good.text


def test_bad_requests_without_a_key_are_401_before_any_parsing(server: BentoServer) -> None:
    response = httpx.post(server.url + "/classify", content=b"\xff\xfe", headers={"content-type": "text/plain"}, timeout=10)
    assert_error_shape(response, 401)


def test_ops_endpoints_take_only_the_ops_key(server: BentoServer) -> None:
    for path in ("/metrics", "/healthz", "/readyz", "/livez"):
        assert httpx.get(server.url + path, timeout=10).status_code == 401, path
        assert httpx.get(server.url + path, headers={"X-API-Key": API_KEY}, timeout=10).status_code == 401, path
        assert httpx.get(server.url + path, headers={"X-API-Key": OPS_KEY}, timeout=10).status_code == 200, path


def test_docs_stay_open_and_document_the_401(server: BentoServer) -> None:
    document = httpx.get(server.url + "/docs.json", timeout=10).json()
    for path, method in (("/classify", "post"), ("/metrics", "get"), ("/guardrails/status", "get")):
        unauthorized = document["paths"][path][method]["responses"]["401"]
        assert unauthorized["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/FairgateError"}


def test_keys_never_reach_the_log(server: BentoServer) -> None:
    httpx.post(server.url + "/classify", json={"text": "x"}, headers={"X-API-Key": "almost-" + API_KEY}, timeout=10)
    log = server.log()
    for secret in (API_KEY, SECOND_KEY, OPS_KEY):
        assert secret not in log
