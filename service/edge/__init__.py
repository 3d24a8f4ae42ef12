"""The HTTP edge of the service: small ASGI middlewares, one concern each, and one error shape.

In front of the BentoML routes, outermost first (``fairgate.service.service`` adds them):

1. API keys (:mod:`fairgate.service.auth`): 401 before any other work.
2. :class:`OpenAPIErrors` (:mod:`.openapi`): ``/docs.json`` documents every error status,
   all referring to one schema.
3. :class:`Admission` (:mod:`.admission`): load shedding and the request deadline (503 +
   ``Retry-After``).
4. :class:`BodyLimits` (:mod:`.body`): 400/413/415 for bodies BentoML must not parse.
5. :class:`UniformErrors` (:mod:`.uniform_errors`): errors from behind the edge in the one
   shape; validation errors name the field.
6. :class:`ReadinessGate` (:mod:`.readiness`): 503 with the reason until the models load.

Every 4xx/5xx they (and the service) answer is an :class:`ErrorResponse` built by
:func:`error_response` (:mod:`.errors`). :mod:`.redaction` keeps rejected bodies out of
the logs. :mod:`.metrics` counts what they refuse (``fairgate_shed_total{reason}``,
``fairgate_queue_items``, ``fairgate_auth_failures_total{reason}``); the middlewares only
call the callbacks they are given.
"""

from fairgate.service.edge.admission import Admission
from fairgate.service.edge.body import BodyLimits
from fairgate.service.edge.errors import ERROR_SCHEMA, ErrorResponse, FieldError, error_response
from fairgate.service.edge.openapi import OpenAPIErrors, document_errors
from fairgate.service.edge.readiness import ReadinessGate
from fairgate.service.edge.redaction import RedactValidationLogs, install_log_redaction
from fairgate.service.edge.uniform_errors import UniformErrors

__all__ = [
    "ERROR_SCHEMA",
    "Admission",
    "BodyLimits",
    "ErrorResponse",
    "FieldError",
    "OpenAPIErrors",
    "ReadinessGate",
    "RedactValidationLogs",
    "UniformErrors",
    "document_errors",
    "error_response",
    "install_log_redaction",
]
