"""Optional API keys for the service, checked by an ASGI middleware before any other work.

Keys come from ``FAIRGATE_API_KEYS`` (comma- or newline-separated) and/or the file named
by ``FAIRGATE_API_KEYS_FILE`` (one key per line, ``#`` comments). With no key configured
the service is open, as before. With keys, every path needs one (deny by default) except:

- the operational endpoints ``/metrics``, ``/healthz``, ``/livez``, ``/readyz``: open, or
  guarded by their own keys (``FAIRGATE_OPS_API_KEYS`` / ``FAIRGATE_OPS_API_KEYS_FILE``)
  so a Prometheus scraper never holds a key that can classify;
- the API description (``/docs.json``, ``/docs``, ``/``, static files): open unless
  ``FAIRGATE_API_KEYS_PROTECT_DOCS=true``.

The admin endpoints (``/admin/...``: policy reload, window resets, checks, the audit trail)
always need an ops key. With no ``FAIRGATE_OPS_API_KEYS`` configured they are refused with
a 403 naming the variable, whatever ``FAIRGATE_API_KEYS`` says: an endpoint that changes
what the service blocks must never be open by default, nor reachable with a key handed to
a product to classify. The accepted key's id (``key-`` and the first 8 hex digits of its
SHA-256, never the key) is left in the ASGI scope under :data:`PRINCIPAL_SCOPE_KEY`, so the
audit trail can say who changed the policy.

A client sends ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Keys are compared
as SHA-256 digests with :func:`hmac.compare_digest`, against every configured key without
stopping at the first match, so the time taken says nothing about how much of a key was
right. Keys are held as ``SecretStr`` and never logged or echoed in a response. The
variables are read into :class:`fairgate.service.settings.AuthSettings`, whose
``key_rings()`` reads the key files (:func:`key_ring`) once, at start.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.datastructures import Headers

from fairgate.service.edge.errors import error_response
from fairgate.service.edge.metrics import AUTH_FAILURE_REASONS

if TYPE_CHECKING:
    from pydantic import SecretStr
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "ADMIN_PREFIX",
    "AUTH_FAILURE_REASONS",
    "DOC_PATHS",
    "OPS_PATHS",
    "PRINCIPAL_SCOPE_KEY",
    "ApiKeyAuth",
    "AuthError",
    "KeyRing",
    "is_admin_path",
    "key_id",
    "key_ring",
]

logger = logging.getLogger(__name__)

OPS_PATHS = frozenset({"/metrics", "/healthz", "/livez", "/readyz"})
DOC_PATHS = frozenset({"/", "/docs", "/docs.json"})
DOC_PREFIXES = ("/static_content/",)
ADMIN_PREFIX = "/admin"
PRINCIPAL_SCOPE_KEY = "fairgate.principal"
ANONYMOUS = "anonymous"


class AuthError(ValueError):
    """The key configuration is unusable; the message names the variable or file and the fix."""


def key_id(digest: bytes) -> str:
    """A key's printable id: ``key-`` and the first 8 hex digits of its SHA-256 (not enough to guess it)."""
    return "key-" + digest.hex()[:8]


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


class KeyRing:
    """A set of keys, kept only as SHA-256 digests, checked in constant time."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(hashlib.sha256(key.encode("utf-8")).digest() for key in keys)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:  # never the keys
        return f"KeyRing({len(self._digests)} keys)"

    def accepts(self, presented: str | None) -> bool:
        return self.match(presented) is not None

    def match(self, presented: str | None) -> str | None:
        """The id (:func:`key_id`) of the key ``presented`` is, or None."""
        if presented is None or not self._digests:
            return None
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: str | None = None
        for known in self._digests:  # no early exit: same work whichever key matches
            if hmac.compare_digest(digest, known):
                found = key_id(known)
        return found


def _split_keys(raw: str) -> list[str]:
    keys = []
    for line in raw.replace(",", "\n").splitlines():
        key = line.strip()
        if key and not key.startswith("#"):
            keys.append(key)
    return keys


def _read_key_file(path: Path, variable: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise AuthError(
            f"{variable}={str(path)!r}: cannot read the key file ({error.strerror}); "
            "point it at a readable file with one key per line, or unset it"
        ) from None
    keys = _split_keys(text)
    if not keys:
        raise AuthError(f"{variable}={str(path)!r}: the file holds no key; add one key per line, or unset it")
    return keys


def key_ring(inline: SecretStr | None, file: Path | None, *, variable: str, min_chars: int) -> KeyRing:
    """The keys of ``variable`` (inline, comma- or newline-separated) and of ``variable``_FILE.

    Raises :class:`AuthError` naming the variable when the file cannot be read or holds no
    key, or when a key is shorter than ``min_chars``.
    """
    keys = _split_keys(inline.get_secret_value()) if inline is not None else []
    if file is not None:
        keys += _read_key_file(file, variable + "_FILE")
    short = sum(len(k) < min_chars for k in keys)
    if short:
        raise AuthError(
            f"{variable}: {short} key(s) shorter than {min_chars} characters; "
            "use long random keys (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return KeyRing(keys)


def _presented_key(headers: Headers) -> str | None:
    value = headers.get("x-api-key")
    if value is not None:
        return value.strip()
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def _failure_reason(ring: KeyRing, presented: str | None) -> str:
    """A bounded label for a refusal: one of :data:`AUTH_FAILURE_REASONS`."""
    if not len(ring):
        return "admin_disabled"
    return "missing" if presented is None else "invalid"


class ApiKeyAuth:
    """ASGI middleware: 401 unless the request carries a key of the ring its path needs."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_keys: KeyRing,
        ops_keys: KeyRing | None = None,
        protect_docs: bool = False,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.api_keys = api_keys
        self.ops_keys = ops_keys if ops_keys is not None else KeyRing(())
        self.protect_docs = protect_docs
        # Called with the reason (missing, invalid, admin_disabled) of each refusal: the
        # edge metrics count them (fairgate_auth_failures_total).
        self.on_failure = on_failure

    def ring_for(self, path: str) -> KeyRing | None:
        """The keys ``path`` needs, or None when it is open (admin paths: always the ops keys)."""
        if is_admin_path(path):
            return self.ops_keys
        if path in OPS_PATHS:
            return self.ops_keys if len(self.ops_keys) else None
        if not self.protect_docs and (path in DOC_PATHS or path.startswith(DOC_PREFIXES)):
            return None
        return self.api_keys if len(self.api_keys) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        ring = self.ring_for(path)
        if ring is None:
            await self.app(scope, receive, send)
            return
        presented = _presented_key(Headers(scope=scope))
        principal = ring.match(presented)
        if principal is not None:
            scope[PRINCIPAL_SCOPE_KEY] = principal
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if self.on_failure is not None:
            self.on_failure(_failure_reason(ring, presented))
        if not len(ring):  # an admin path with no ops key configured
            logger.warning("refused %s: admin endpoints are disabled without FAIRGATE_OPS_API_KEYS", path)
            refused = error_response(
                403,
                "admin endpoints are disabled: set FAIRGATE_OPS_API_KEYS (or FAIRGATE_OPS_API_KEYS_FILE) "
                "and send one of those keys as Authorization: Bearer <key>",
            )
            await refused(scope, receive, send)
            return
        which = "FAIRGATE_OPS_API_KEYS" if ring is self.ops_keys else "FAIRGATE_API_KEYS"
        logger.info("rejected a request to %s: missing or invalid API key", scope.get("path"))
        response = error_response(
            401,
            f"missing or invalid API key; send Authorization: Bearer <key> or X-API-Key ({which})",
            headers={"WWW-Authenticate": 'Bearer realm="fairgate"'},
        )
        await response(scope, receive, send)
