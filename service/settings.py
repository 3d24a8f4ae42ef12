"""The service's configuration: every environment variable it reads, read once into one typed object.

:class:`FairgateSettings` is the one settings object, with a section per concern:
``service`` (models, policy, workers, batching, request sizes, Redis), ``limits`` (the HTTP
edge's overload and body limits), ``auth`` (API keys) and ``audit`` (the audit trail).
Each section's fields are read from the flat, documented names (``FAIRGATE_WORKERS``,
``FAIRGATE_MAX_CONCURRENCY``, ``FAIRGATE_API_KEYS``, ``FAIRGATE_AUDIT_DB``, and BentoML's
``BENTOML_HOME`` for the default audit path), so deployments keep working; nothing else in
``fairgate.service`` reads the environment (a test checks). A bad value fails at start
with :class:`SettingsError`, which lists every bad variable with its value (secrets
masked) and the fix, instead of failing somewhere deep in a request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from fairgate.service.fields import DEFAULT_MAX_ITEMS, DEFAULT_MAX_TEXT_CHARS

if TYPE_CHECKING:
    from fairgate.service._faults import FaultSpec
    from fairgate.service.auth import KeyRing

__all__ = [
    "AuditSettings",
    "AuthSettings",
    "FairgateSettings",
    "LimitSettings",
    "ServiceSettings",
    "SettingsError",
    "environment_with",
]


class SettingsError(ValueError):
    """An environment variable holds a bad value; the message names the variable and the fix."""


class _Section(BaseModel):
    """One section of :class:`FairgateSettings`: frozen; field ``x`` is read from ``ENV_PREFIX + X``.

    ``ENV_NAMES`` maps a field to another variable name; ``SECRET_FIELDS`` are never shown
    in an error message.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ENV_PREFIX: ClassVar[str] = "FAIRGATE_"
    ENV_NAMES: ClassVar[Mapping[str, str]] = {}
    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable that sets ``field``."""
        return cls.ENV_NAMES.get(field, cls.ENV_PREFIX + field.upper())


class ServiceSettings(_Section):
    """The ``Fairgate`` BentoML service: models, policy, workers, batching, request sizes, Redis.

    ``workers``, ``batching``, ``max_batch_size``, ``max_latency_ms``, ``max_items`` and
    ``max_text_chars`` shape the BentoML service and its API signatures, so they count when
    BentoML imports ``fairgate.service.service``; the rest when a worker loads.
    """

    policy: Path | None = Field(
        default=None,
        description="policy YAML; unset uses the bundled guardrails/data/default_policy.yaml",
    )
    classifier_tag: str = Field(default="fairgate-classifier:latest", description="classifier model tag")
    guard_tag: str = Field(default="fairgate-toxicity:latest", description="toxicity guard model tag")
    onnx_variant: Literal["int8", "fp32"] = Field(default="int8", description="ONNX file of both models")
    intra_op_threads: int | None = Field(
        default=None,
        ge=1,
        description="ONNX Runtime threads per session (default: available CPUs / workers, halved when the "
        "models overlap; see threads_per_session)",
    )
    guard_intra_op_threads: int | None = Field(
        default=None,
        ge=1,
        description="ONNX Runtime threads of the guard's session (default: intra_op_threads if set; else all of "
        "a worker's CPUs when the models overlap; else as the classifier; see guard_threads_per_session)",
    )
    cpus: int | None = Field(
        default=None,
        ge=1,
        description="CPUs to share out over the workers' ONNX sessions (default: counted from the affinity mask "
        "and cgroup quota); Kubernetes sets it from the pod's CPU request",
    )
    workers: int = Field(default=1, ge=1, le=64, description="BentoML worker processes")
    host: str = Field(default="0.0.0.0", min_length=1, description="`fairgate serve`: the address to listen on")
    port: int = Field(default=3000, ge=1, le=65535, description="`fairgate serve`: the port to listen on")
    batching: Literal["queue", "bentoml"] = Field(
        default="queue",
        description="queue: fairgate's micro-batcher (no added wait); bentoml: BentoML's adaptive dispatcher",
    )
    max_queue_items: int = Field(
        default=2048, ge=1, description="items waiting for a batch per worker before new requests get 503"
    )
    max_batch_size: int = Field(
        default=32, ge=2, le=1024, description="most items one adaptive batch sends to the models"
    )
    max_latency_ms: int = Field(
        default=10_000,
        ge=10,
        description="FAIRGATE_BATCHING=bentoml only: the dispatcher's latency budget (503 past it)",
    )
    bucket_size: int = Field(
        default=8, ge=1, le=1024, description="texts per length-sorted sub-batch inside a batch"
    )
    overlap_models: bool = Field(
        default=True,
        description="run the classifier beside the guard's screen, on its own thread (the answers for items the "
        "screen blocks are discarded unseen), when a worker has 2 CPUs or more; false: the classifier sees only "
        "the items the screen passed",
    )
    access_log: bool = Field(default=False, description="BentoML's per-request access log line")
    probe_queue_batches: int = Field(
        default=8,
        ge=0,
        le=1024,
        description="decided batches waiting for the background counterfactual probe; a batch past it is "
        "left unprobed and counted (0: probe inline, before the batch is answered)",
    )
    max_items: int = Field(
        default=DEFAULT_MAX_ITEMS, ge=1, le=4096, description="most items in one /classify_batch request"
    )
    max_text_chars: int = Field(
        default=DEFAULT_MAX_TEXT_CHARS, ge=1, description="longest accepted text, in characters"
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for fleet-wide rate windows and alerts (redis://HOST:PORT/DB, rediss://, unix://); "
        "unset: each worker keeps its own (docs/fleet.md)",
    )
    redis_timeout_ms: float = Field(
        default=50, gt=0, le=10_000, description="timeout of one round trip to Redis; past it the batch fails over"
    )
    redis_backoff_max_s: float = Field(
        default=5.0, gt=0, le=300, description="longest wait between reconnect attempts while Redis is down"
    )
    redis_key_ttl_s: float = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="Redis keys not written for this long expire (retired groups, monitors, policy versions)",
    )
    redis_prefix: str = Field(
        default="fairgate", description="first part of every Redis key (several deployments on one Redis)"
    )
    faults: dict[str, tuple[str, float]] = Field(
        default_factory=dict,
        description="tests only: fault injection (scorer=raise, scorer=sleep:SECONDS, classifier=raise); "
        "unset, nothing is wrapped",
    )

    @field_validator("classifier_tag", "guard_tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        value = value.strip()
        if not value or any(ch.isspace() for ch in value) or value.count(":") > 1:
            raise ValueError(f"{value!r} is not a model tag; use NAME or NAME:VERSION")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        from fairgate.guardrails.redis_store import check_redis_url

        if value is None or not value.strip():
            return None  # `make serve` passes an empty REDIS_URL when none is given
        return check_redis_url(value)

    @field_validator("redis_prefix")
    @classmethod
    def _redis_prefix(cls, value: str) -> str:
        if not value or any(ch in value for ch in "{}*?[] :"):
            raise ValueError(f"{value!r} is not a key prefix; use letters, digits, '-' or '_'")
        return value

    @field_validator("faults", mode="before")
    @classmethod
    def _faults(cls, value: object) -> FaultSpec | object:
        from fairgate.service._faults import parse_faults

        if value is None or isinstance(value, str):
            try:
                return parse_faults(value)
            except ValueError as error:  # its message starts with the variable; the error line names it
                raise ValueError(str(error).partition(": ")[2] or str(error)) from None
        return value

    def threads_per_session(self, cpus: int | None = None) -> int:
        """ONNX Runtime intra-op threads per session: explicit, else the CPUs shared out over
        the workers and, with ``overlap_models``, over the two sessions a batch runs at once.

        A worker runs one batch at a time. With ``overlap_models`` (the default) the guard's
        and the classifier's sessions run side by side, so each gets half the worker's CPUs;
        without it they run one after the other and each gets them all. Measured on 2 cores,
        one worker (docs/service.md, "Overlap"): overlapped with one thread each against two
        threads each, saturation 69.6 → 73.6 req/s and server CPU per request 27.3 → 24.5 ms
        in alternating rounds; before the overlap, one thread left a core idle (58.6 req/s
        against 93.9 with two). The background counterfactual probe runs beside them on its
        own niced thread; with one thread per session the whole of its ONNX work stays on
        that thread. The pools never spin (``allow_spinning`` is off). ``cpus``: the CPUs to
        share (default ``FAIRGATE_CPUS``, else :func:`~fairgate.service.cpus.available_cpus`,
        affinity and cgroup quota).
        """
        if self.intra_op_threads is not None:
            return self.intra_op_threads
        sessions_at_once = 2 if self.overlaps(cpus) else 1
        return max(1, self._cpus(cpus) // (self.workers * sessions_at_once))

    def guard_threads_per_session(self, cpus: int | None = None) -> int:
        """ONNX Runtime intra-op threads of the guard's session: explicit
        (``guard_intra_op_threads``, else ``intra_op_threads``), else, when the models
        overlap, all of a worker's CPUs, else :meth:`threads_per_session`.

        Why the guard gets more than its half: a batch waits for the slower of the two
        overlapped sessions, and with the default models that is the guard (its FFN
        down-projections stay fp32 and its weights u8, for its fairness figures; the
        classifier is all-int8). While both run, their threads share the cores (the pools do
        not spin); once the classifier is done, the guard has them all. Measured on 2 CPUs,
        one worker, default models (docs/service.md, "Overlap"): guard 2 threads and classifier 1
        against 1 and 1, in alternating rounds: saturation 123.4 -> 138.9 req/s, server CPU
        per request 12.7 -> 13.5 ms, p99 at 61.7 req/s 23.6 -> 19.8 ms. A classifier heavier
        than the guard wants the opposite: set both variables. With more workers each runs
        the same 1.5 threads per CPU of its share (not measured). The background probe's
        guard runs then use the session's pool thread too, which is not niced.
        """
        if self.guard_intra_op_threads is not None:
            return self.guard_intra_op_threads
        if self.intra_op_threads is None and self.overlaps(cpus):
            return max(1, self._cpus(cpus) // self.workers)
        return self.threads_per_session(cpus)

    def overlaps(self, cpus: int | None = None) -> bool:
        """Whether a worker runs its two sessions side by side: ``overlap_models`` and at
        least 2 CPUs per worker. On one CPU the two sessions would only take turns on it
        (more switching, no more compute), so each worker then runs them one after the
        other. ``cpus`` as for :meth:`threads_per_session`."""
        return self.overlap_models and self._cpus(cpus) // self.workers >= 2

    def _cpus(self, cpus: int | None) -> int:
        if cpus is None:
            cpus = self.cpus
        if cpus is None:
            from fairgate.service.cpus import available_cpus

            cpus = available_cpus()
        return cpus


class LimitSettings(_Section):
    """The overload and body limits of the HTTP edge (docs/reliability.md), and the explanations' cost."""

    max_concurrency: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="inference requests in flight per worker; past it a request gets 503 + Retry-After at once",
    )
    request_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="a request not answered in this time gets 503 + Retry-After (its work keeps its slot)",
    )
    retry_after_s: int = Field(default=1, ge=1, le=3600, description="the Retry-After of every 503")
    max_body_bytes: int | None = Field(
        default=None,
        ge=1024,
        description="largest accepted body; unset: enough for FAIRGATE_MAX_ITEMS texts of the maximum size",
    )
    max_json_depth: int = Field(default=8, ge=2, le=64, description="deepest JSON nesting accepted")
    scorer_timeout_s: float = Field(
        default=5.0, gt=0, le=600, description="a toxicity scoring call longer than this counts as a monitor error"
    )
    max_explained: int = Field(
        default=8,
        ge=0,
        le=256,
        description='items asking for "explain": true in one request; past it the request gets 413 (0: explanations off)',
    )

    def body_limit(self, *, max_items: int, max_text_chars: int) -> int:
        """The body limit: explicit, or the largest legitimate batch with room for JSON escapes."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        # A character is at most 4 UTF-8 bytes, or 6 as a JSON \\uXXXX escape; plus keys and groups.
        return max_items * (max_text_chars * 6 + 512) + 1024


class AuthSettings(_Section):
    """Where the API keys come from (docs/reliability.md, API keys)."""

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"api_keys", "ops_api_keys"})

    api_keys: SecretStr | None = Field(default=None, description="API keys, comma-separated")
    api_keys_file: Path | None = Field(default=None, description="file with one API key per line")
    ops_api_keys: SecretStr | None = Field(default=None, description="keys for /metrics, /healthz, /livez, /readyz")
    ops_api_keys_file: Path | None = Field(default=None, description="file with one ops key per line")
    api_keys_protect_docs: bool = Field(default=False, description="require an API key for /docs.json and /docs")
    min_key_chars: int = Field(default=16, ge=1, description="shortest accepted key")

    def key_rings(self) -> tuple[KeyRing, KeyRing]:
        """(API keys, ops keys), the key files read now; empty rings mean open.

        :class:`~fairgate.service.auth.AuthError` names an unreadable or empty key file, or short keys.
        """
        from fairgate.service.auth import key_ring

        return (
            key_ring(self.api_keys, self.api_keys_file, variable="FAIRGATE_API_KEYS", min_chars=self.min_key_chars),
            key_ring(
                self.ops_api_keys, self.ops_api_keys_file, variable="FAIRGATE_OPS_API_KEYS", min_chars=self.min_key_chars
            ),
        )


class AuditSettings(_Section):
    """Where the audit trail goes and whether it keeps raw text (``FAIRGATE_AUDIT_*``)."""

    ENV_PREFIX: ClassVar[str] = "FAIRGATE_AUDIT_"
    ENV_NAMES: ClassVar[Mapping[str, str]] = {"bentoml_home": "BENTOML_HOME"}

    db: str | None = Field(
        default=None, description="SQLite path (or sqlite:///path); unset: under BENTOML_HOME; 'off' disables"
    )
    store_text: bool = Field(default=False, description="also store the raw text (privacy: off by default)")
    synchronous: Literal["FULL", "NORMAL"] = Field(default="FULL", description="SQLite synchronous pragma")
    bentoml_home: Path = Field(
        default=Path("~/bentoml"), description="BentoML's home (BENTOML_HOME): the default audit file is under it"
    )

    @field_validator("bentoml_home", mode="before")
    @classmethod
    def _home(cls, value: object) -> object:
        return "~/bentoml" if value is None or value == "" else value  # BentoML treats empty as unset too

    @property
    def enabled(self) -> bool:
        return (self.db or "").strip().lower() not in ("off", "none", "false", "0")

    def location(self) -> str:
        """``db``, or the default ``$BENTOML_HOME/fairgate/audit.sqlite3``."""
        from fairgate.service.audit import default_audit_path

        return self.db.strip() if self.db and self.db.strip() else str(default_audit_path(self.bentoml_home))


def _sections(settings_cls: type[BaseModel]) -> dict[str, type[_Section]]:
    sections = {}
    for name, field in settings_cls.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, _Section):
            sections[name] = field.annotation
    return sections


class _FlatEnvironment(PydanticBaseSettingsSource):
    """The documented flat names into the nested sections: ``FAIRGATE_MAX_CONCURRENCY`` -> ``limits.max_concurrency``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every section at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for section_name, section in _sections(self.settings_cls).items():
            for field_name in section.model_fields:
                variable = section.variable(field_name)
                if variable in self._environ:
                    values.setdefault(section_name, {})[field_name] = self._environ[variable]
        return values


class FairgateSettings(BaseSettings):
    """All of the service's configuration: one object, read once at start, handed down.

    Build it with :meth:`from_env` (friendly errors); in tests, pass sections or overrides
    directly: ``FairgateSettings(limits=LimitSettings(max_concurrency=2))`` still reads the
    other sections from the environment.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    service: ServiceSettings = Field(default_factory=ServiceSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the flat environment names; no .env or secrets directory."""
        return (init_settings, _FlatEnvironment(settings_cls, os.environ))

    @classmethod
    def from_env(cls, **overrides: Any) -> FairgateSettings:
        """Read the environment; :class:`SettingsError` names each bad variable, its value and the fix."""
        try:
            return cls(**overrides)
        except ValidationError as error:
            raise SettingsError(_explain(error, _sections(cls))) from None


def _explain(error: ValidationError, sections: Mapping[str, type[_Section]]) -> str:
    lines = ["invalid fairgate service settings:"]
    for item in error.errors():
        loc = item["loc"]
        section = sections.get(str(loc[0])) if loc else None
        message = item["msg"].removeprefix("Value error, ")
        if section is None or len(loc) < 2:
            lines.append(f"  {'.'.join(map(str, loc)) or 'settings'}: {message}")
            continue
        field = str(loc[1])
        name = section.variable(field)
        shown = item.get("input")
        if field in section.SECRET_FIELDS:
            shown = "***"  # never print a key
        elif name == "FAIRGATE_REDIS_URL" and isinstance(shown, str):
            from fairgate.guardrails.redis_store import mask_url

            shown = mask_url(shown)  # never print a password
        lines.append(f"  {name}={shown!r}: {message}; fix or unset the variable")
    return "\n".join(lines)


def environment_with(variables: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus ``variables``: what ``fairgate serve`` hands to ``bentoml serve``.

    Here because this module is the one place that reads the environment. numpy's OpenBLAS
    gets one thread per worker unless the environment says otherwise: the domain monitor's
    matrix product per batch is small, and OpenBLAS threads spin-wait like ONNX Runtime's
    (measured on the loaded 2-core host: 48 ms per 32-row product with its default threads,
    under 1 ms with one; docs/guardrails.md, "The domain-shift monitor").
    """
    return {"OPENBLAS_NUM_THREADS": "1", **os.environ, **variables}
