"""What can go wrong when calling a fairgate server, one exception per thing to do about it.

Every message names the request, the status, the server's own error text and what to do,
so a log line is enough to act on. The server's error JSON (``{"error", "detail",
"errors"}``, docs/reliability.md) is kept on the exception as ``body``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "FairgateAuthError",
    "FairgateConnectionError",
    "FairgateError",
    "FairgateHTTPError",
    "FairgateRequestError",
    "FairgateResponseError",
    "FairgateServerError",
    "FairgateUnavailableError",
]


class FairgateError(Exception):
    """Base of every error this client raises."""


class FairgateHTTPError(FairgateError):
    """The server answered with an error status.

    ``status_code``: the HTTP status; ``error``: the server's message (its ``error`` field,
    or the start of the body when it is not fairgate's JSON); ``body``: the parsed JSON body,
    or None when the body was not JSON.
    """

    def __init__(
        self, message: str, *, method: str, path: str, status_code: int, error: str, body: dict[str, Any] | None
    ) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.status_code = status_code
        self.error = error
        self.body = body

    @property
    def field_errors(self) -> list[dict[str, Any]]:
        """The server's per-field problems (``errors``: field, type, msg), for programs; [] if none."""
        errors = (self.body or {}).get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


class FairgateRequestError(FairgateHTTPError):
    """A 4xx: the request itself is wrong (a field, a limit, the path); retrying will not help."""


class FairgateAuthError(FairgateRequestError):
    """A 401 or 403: no API key, or not one the server accepts."""


class FairgateServerError(FairgateHTTPError):
    """A 5xx that is not worth retrying (500, 504): the server failed on this request."""


class FairgateUnavailableError(FairgateHTTPError):
    """503 or 429 on every attempt the retry policy allowed.

    ``attempts``: requests sent; ``waited_s``: seconds slept between them; ``retry_after_s``:
    the last ``Retry-After`` the server asked for (None if it sent none).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        status_code: int,
        error: str,
        body: dict[str, Any] | None,
        attempts: int,
        waited_s: float,
        retry_after_s: float | None,
    ) -> None:
        super().__init__(message, method=method, path=path, status_code=status_code, error=error, body=body)
        self.attempts = attempts
        self.waited_s = waited_s
        self.retry_after_s = retry_after_s


class FairgateConnectionError(FairgateError):
    """The server could not be reached, or did not answer in time."""


class FairgateResponseError(FairgateError):
    """A 2xx whose body does not match this client's models (client and server versions differ)."""
