"""Rejected request bodies in the logs: one WARNING line naming fields, never the client's data.

Two layers keep request text out of the logs, each doing what the other cannot:

- **pydantic's ``hide_input_in_errors``**, set on every request model the service
  validates (:mod:`fairgate.service.schemas`, :mod:`fairgate.service._io`): the input never
  enters a ``ValidationError``'s message, so no logger, traceback printer or crash
  reporter can show it, whoever logs the error.
- **:class:`RedactValidationLogs`**, a logging filter on BentoML's request loggers, for what
  that setting cannot cover: the *name* of an unknown field is client data too, and
  pydantic puts it in the error's location, which ``hide_input_in_errors`` keeps; and
  BentoML logs every rejected body at ERROR with a full traceback, though a client's bad
  body is not a server error. The filter replaces such a record with one WARNING line
  naming the known fields and error types, without the traceback. Errors other than
  rejected bodies keep their traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from pydantic import ValidationError

from fairgate.service.edge.errors import field_path

__all__ = ["REDACTED_LOGGERS", "RedactValidationLogs", "install_log_redaction"]

REDACTED_LOGGERS = ("bentoml._internal.server.http_app", "bentoml.access", "_bentoml_impl.server.app")
"""BentoML's loggers that log rejected request bodies."""


class RedactValidationLogs(logging.Filter):
    """Turn a logged rejection (validation or decode error) into one WARNING summary line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        if isinstance(exc, ValidationError):
            errors = exc.errors(include_input=False, include_url=False, include_context=False)
            # An unknown key's name is client data too: name only the known fields.
            summary = ", ".join(
                "an unknown field (extra_forbidden)"
                if e["type"] == "extra_forbidden"
                else f"{field_path(e['loc'])} ({e['type']})"
                for e in errors[:10]
            )
            record.msg = f"rejected a request body: {exc.error_count()} validation error(s): {summary}"
        elif isinstance(exc, (UnicodeDecodeError, json.JSONDecodeError)):
            record.msg = f"rejected a request body: {type(exc).__name__}"
        else:
            return True
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install_log_redaction(logger_names: Iterable[str] = REDACTED_LOGGERS) -> None:
    """Attach :class:`RedactValidationLogs` to BentoML's request loggers (idempotent)."""
    for name in logger_names:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactValidationLogs) for f in target.filters):
            target.addFilter(RedactValidationLogs())
