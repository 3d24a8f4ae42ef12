"""The service's configuration: environment variables, read once into one typed object.

Every knob an operator may turn without editing code lives here, with the ``FAIRGATE_``
prefix, so ``docs/service.md`` can list them from one place and a typo in a value fails
at start with the variable's name instead of somewhere deep in a request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings", "SettingsError"]


class SettingsError(ValueError):
    """An environment variable holds a bad value; the message names the variable and the fix."""


class ServiceSettings(BaseSettings):
    """Configuration of the ``Fairgate`` BentoML service (see ``docs/service.md``).

    ``workers``, ``max_batch_size``, ``max_latency_ms`` and ``max_items`` shape the BentoML
    service and its API signatures, so BentoML reads them when it imports
    ``fairgate.service.service``; the rest are read when a worker starts.
    """

    model_config = SettingsConfigDict(env_prefix="FAIRGATE_", extra="ignore", frozen=True)

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
        description="ONNX Runtime threads per session (default 1; see threads_per_session)",
    )
    workers: int = Field(default=1, ge=1, le=64, description="BentoML worker processes")
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
    access_log: bool = Field(default=False, description="BentoML's per-request access log line")
    max_items: int = Field(default=256, ge=1, le=4096, description="most items in one /classify_batch request")
    max_text_chars: int = Field(default=10_000, ge=1, description="longest accepted text, in characters")
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

    @classmethod
    def from_env(cls) -> ServiceSettings:
        """Read the environment; :class:`SettingsError` names each bad variable and the fix."""
        from pydantic import ValidationError

        try:
            return cls()
        except ValidationError as error:
            lines = ["invalid fairgate service settings:"]
            for item in error.errors():
                name = "FAIRGATE_" + "_".join(str(p) for p in item["loc"]).upper()
                message = item["msg"].removeprefix("Value error, ")
                shown = item.get("input")
                if name == "FAIRGATE_REDIS_URL" and isinstance(shown, str):
                    from fairgate.guardrails.redis_store import mask_url

                    shown = mask_url(shown)  # never print a password
                lines.append(f"  {name}={shown!r}: {message}; fix or unset the variable")
            raise SettingsError("\n".join(lines)) from None

    def threads_per_session(self) -> int:
        """ONNX Runtime intra-op threads per session: explicit, else 1.

        ORT's intra-op pool spins while it waits; when the cores are shared (other workers,
        the event loop, the tokenizer, neighbours) its threads wait on each other. Measured
        on this repository's 2-core machine under load (docs/service.md): a MiniLM batch of
        16 took 157 ms with 1 thread and 504 ms with 2. Parallelism comes from workers;
        raise this on dedicated cores.
        """
        return self.intra_op_threads if self.intra_op_threads is not None else 1
