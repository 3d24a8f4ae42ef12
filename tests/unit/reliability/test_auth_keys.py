"""API keys: which paths need which key, constant-time checks, keys never shown."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fairgate.service.auth import ApiKeyAuth, AuthError, KeyRing
from fairgate.service.settings import AuthSettings, FairgateSettings
from tests.helpers.error_shape import assert_error_shape

API_KEY = "k-api-0123456789abcdef"
OPS_KEY = "k-ops-0123456789abcdef"


async def ok(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


APP = Starlette(
    routes=[Route(p, ok, methods=["GET", "POST"]) for p in ("/classify", "/guardrails/status", "/metrics", "/readyz", "/docs.json", "/x")]
)


def get(app: Any, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.get(path, headers=headers or {})

    return asyncio.run(go())


def test_no_keys_means_open() -> None:
    app = ApiKeyAuth(APP, api_keys=KeyRing(()))
    assert all(get(app, p).status_code == 200 for p in ("/classify", "/guardrails/status", "/metrics", "/x"))


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-key-wrong-key"}, 401),
        ({"Authorization": f"Basic {API_KEY}"}, 401),
        ({"X-API-Key": API_KEY[:-1]}, 401),
        ({"Authorization": f"Bearer {API_KEY}"}, 200),
        ({"X-API-Key": API_KEY}, 200),
        ({"X-API-Key": OPS_KEY}, 401),
    ],
)
def test_inference_and_status_need_an_api_key(headers: dict[str, str], status: int) -> None:
    app = ApiKeyAuth(APP, api_keys=KeyRing([API_KEY]), ops_keys=KeyRing([OPS_KEY]))
    for path in ("/classify", "/guardrails/status", "/x"):
        response = get(app, path, headers)
        assert response.status_code == status, path
        if status == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "FAIRGATE_API_KEYS" in assert_error_shape(response, 401).error
            assert API_KEY not in response.text


def test_ops_endpoints_are_open_without_ops_keys_and_docs_stay_open() -> None:
    app = ApiKeyAuth(APP, api_keys=KeyRing([API_KEY]))
    assert get(app, "/metrics").status_code == 200
    assert get(app, "/readyz").status_code == 200
    assert get(app, "/docs.json").status_code == 200
    protected = ApiKeyAuth(APP, api_keys=KeyRing([API_KEY]), protect_docs=True)
    assert get(protected, "/docs.json").status_code == 401


def test_ops_endpoints_take_their_own_key() -> None:
    app = ApiKeyAuth(APP, api_keys=KeyRing([API_KEY]), ops_keys=KeyRing([OPS_KEY]))
    assert get(app, "/metrics").status_code == 401
    assert get(app, "/metrics", {"X-API-Key": API_KEY}).status_code == 401
    assert get(app, "/metrics", {"Authorization": f"Bearer {OPS_KEY}"}).status_code == 200
    assert get(app, "/classify", {"X-API-Key": OPS_KEY}).status_code == 401


def test_keys_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "keys.txt"
    file.write_text("# team keys\nfile-key-0123456789abcdef\n\n", encoding="utf-8")
    monkeypatch.setenv("FAIRGATE_API_KEYS", f"{API_KEY}, env-key-0123456789abcdef")
    monkeypatch.setenv("FAIRGATE_API_KEYS_FILE", str(file))
    settings = FairgateSettings.from_env().auth
    api, ops = settings.key_rings()
    assert len(api) == 3 and len(ops) == 0
    assert api.accepts("file-key-0123456789abcdef") and api.accepts(API_KEY)
    assert not api.accepts("# team keys") and not api.accepts("")
    # Never shown: not in the settings' repr, not in the ring's.
    assert API_KEY not in repr(settings) and API_KEY not in str(settings.model_dump())
    assert API_KEY not in repr(api)


def test_bad_key_config_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="FAIRGATE_API_KEYS_FILE=.*cannot read"):
        AuthSettings(api_keys_file=tmp_path / "missing.txt").key_rings()
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(AuthError, match="holds no key"):
        AuthSettings(api_keys_file=empty).key_rings()
    with pytest.raises(AuthError, match="shorter than 16 characters"):
        AuthSettings(api_keys="short").key_rings()


def test_rejections_do_not_log_the_presented_key(caplog: pytest.LogCaptureFixture) -> None:
    app = ApiKeyAuth(APP, api_keys=KeyRing([API_KEY]))
    with caplog.at_level(logging.DEBUG):
        assert get(app, "/classify", {"X-API-Key": "almost-" + API_KEY}).status_code == 401
    assert "almost-" not in caplog.text and API_KEY not in caplog.text
    assert "missing or invalid API key" in caplog.text


def test_keyring_checks_every_key() -> None:
    # The check must not stop at the first key; count compare_digest calls.
    from fairgate.service import auth

    calls = []
    original = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return original(a, b)

    ring = KeyRing([API_KEY, OPS_KEY, "third-key-0123456789abc"])
    auth.hmac.compare_digest = counting  # type: ignore[assignment]
    try:
        assert ring.accepts(API_KEY)
    finally:
        auth.hmac.compare_digest = original  # type: ignore[assignment]
    assert len(calls) == 3
