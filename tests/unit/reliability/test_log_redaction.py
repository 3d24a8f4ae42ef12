"""Rejected bodies are logged without their content."""

from __future__ import annotations

import io
import logging

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fairgate.service.edge.redaction import RedactValidationLogs, install_log_redaction


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=5)


def test_validation_error_traceback_is_replaced_by_a_summary() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    log.addFilter(RedactValidationLogs())
    try:
        try:
            Item.model_validate({"text": "my secret sentence", "secret_field": "also secret"})
        except ValidationError:
            log.exception("Exception on %s [%s]", "/classify", "POST")  # as BentoML logs it
        try:
            raise RuntimeError("kept")
        except RuntimeError:
            log.exception("other failure")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "secret" not in text
    assert "WARNING rejected a request body: 2 validation error(s): text (string_too_long), an unknown field (extra_forbidden)" in text
    assert "ERROR other failure" in text and "Traceback" in text and "RuntimeError: kept" in text  # other errors keep their traceback


def test_install_is_idempotent() -> None:
    install_log_redaction(["test.redaction.install"])
    install_log_redaction(["test.redaction.install"])
    filters = logging.getLogger("test.redaction.install").filters
    assert sum(isinstance(f, RedactValidationLogs) for f in filters) == 1
