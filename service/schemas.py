"""Request and response models of the HTTP API: the edge of the service, validated by pydantic.

One result type (:class:`ClassifyResult`) whatever the input shape: ``/classify`` returns
one, ``/classify_batch`` a list of them in request order. A blocked item has
``label: null`` and empty ``scores``; its ``reasons`` say which monitor blocked it, on
what figure and against which threshold.

Examples use OpenAPI 3.0's singular ``example`` key: BentoML 1.4 writes an OpenAPI 3.0
document and rejects the JSON-Schema ``examples`` list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, create_model, model_validator
from pydantic.config import JsonDict

from fairgate.guardrails.decision import GuardStatus, Reason
from fairgate.service.fields import (
    DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_TEXT_CHARS,
    MAX_GROUP_CHARS,
    GroupName,
    bounded_text,
)

if TYPE_CHECKING:
    from fairgate.guardrails.explain import Explanation, LabelExplanation

__all__ = [
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_MAX_TEXT_CHARS",
    "MAX_GROUP_CHARS",
    "ClassifyRequest",
    "ClassifyResult",
    "ExplainedLabel",
    "ExplainedWord",
    "GuardrailsStatusResponse",
    "ItemExplanation",
    "ModelInfo",
    "Reason",
    "WorkerInfo",
    "classify_batch_request_type",
    "classify_request_type",
]

# Text and group limits are the reusable types of service.fields (docs/reliability.md).
# hide_input_in_errors on every request model: a ValidationError never quotes the client's
# text, wherever it is logged (service.edge.redaction says what the log filter adds).

_REQUEST_EXAMPLE: JsonDict = {"text": "The staff were friendly and the food was great.", "group": "female"}
_RESULT_EXAMPLE: JsonDict = {
    "request_id": "6f1c2a9e0b7d4e55a3c1f2e4d5b6a7c8",
    "label": "positive",
    "scores": {"negative": 0.03, "positive": 0.97},
    "action": "allow",
    "reasons": [],
    "toxicity": {
        "toxicity": 0.01,
        "severe_toxicity": 0.0,
        "obscene": 0.0,
        "threat": 0.0,
        "insult": 0.0,
        "identity_attack": 0.0,
    },
    "groups": ["female"],
    "domain_score": 0.62,
}
_EXPLANATION_EXAMPLE: JsonDict = {
    "words_total": 7,
    "words_occluded": 7,
    "truncated": False,
    "labels": [
        {
            "model": "guard",
            "label": "insult",
            "score": 0.91,
            "masked_score": 0.07,
            "action": "flag",
            "words": [{"start": 11, "end": 16, "word": "idiot", "contribution": 0.8}],
        },
        {
            "model": "classifier",
            "label": "negative",
            "score": 0.95,
            "masked_score": 0.41,
            "action": None,
            "words": [
                {"start": 11, "end": 16, "word": "idiot", "contribution": 0.42},
                {"start": 30, "end": 34, "word": "hurt", "contribution": 0.11},
            ],
        },
    ],
}


class ClassifyRequest(BaseModel):
    """One text to classify, with the caller's group for the per-group rate monitors."""

    model_config = ConfigDict(
        extra="forbid", hide_input_in_errors=True, json_schema_extra={"example": _REQUEST_EXAMPLE}
    )

    text: bounded_text(DEFAULT_MAX_TEXT_CHARS)  # type: ignore[valid-type]  # an Annotated type built at run time
    group: GroupName | None = Field(
        default=None,
        json_schema_extra={"nullable": True},
        description=(
            f"the caller's group (e.g. female), at most {MAX_GROUP_CHARS} characters, no control "
            "characters; names outside the policy's list count as 'other'"
        ),
    )
    explain: StrictBool = Field(
        default=False,
        description=(
            "true: the result carries an explanation (which words made each flagging toxicity category "
            "and the classifier's label); at most FAIRGATE_MAX_EXPLAINED items per request (default 8), "
            "past it 413"
        ),
    )


def classify_request_type(max_text_chars: int) -> type[ClassifyRequest]:
    """:class:`ClassifyRequest` with the configured text limit (``FAIRGATE_MAX_TEXT_CHARS``).

    The limit is part of the schema (and so of the OpenAPI document), so it has to be fixed
    when the service class is built; the default returns the class itself.
    """
    if max_text_chars == DEFAULT_MAX_TEXT_CHARS:
        return ClassifyRequest
    return create_model(
        "ClassifyRequest",
        __base__=ClassifyRequest,
        __module__=__name__,
        text=(bounded_text(max_text_chars), ...),
    )


def classify_batch_request_type(item_type: type[ClassifyRequest], max_items: int) -> type[BaseModel]:
    """The body of ``/classify_batch``: ``{"items": [...]}`` with 1..``max_items`` items."""
    return create_model(
        "ClassifyBatchRequest",
        __module__=__name__,
        __config__=ConfigDict(
            extra="forbid",
            hide_input_in_errors=True,
            json_schema_extra={
                "example": {
                    "items": [
                        _REQUEST_EXAMPLE,
                        {"text": "You are an idiot and I will hurt you.", "group": None, "explain": True},
                    ]
                }
            },
        ),
        items=(
            list[item_type],  # type: ignore[valid-type]  # item_type: a class chosen at run time (the text limit)
            Field(
                min_length=1,
                max_length=max_items,
                description=f"the items, at most {max_items} (FAIRGATE_MAX_ITEMS)",
            ),
        ),
    )


class ExplainedWord(BaseModel):
    """One word of the text as sent and how much removing it alone lowers the label's score.

    ``start`` and ``end`` are code point offsets (Python ``str`` indices):
    ``text[start:end] == word``. JavaScript strings index UTF-16 units, so a client there
    converts them for text with characters outside the BMP (emoji).
    """

    start: int = Field(description="offset of the word's first character in the text, in code points")
    end: int = Field(description="offset just past the word's last character, in code points")
    word: str = Field(description="the word, text[start:end]")
    contribution: float = Field(description="the label's score minus its score with this word removed")


class ExplainedLabel(BaseModel):
    """The top words of one label: a toxicity category of the guard, or the classifier's label."""

    model: Literal["guard", "classifier"] = Field(description="guard: a toxicity category; classifier: its label")
    label: str
    score: float = Field(description="the label's score for the text")
    masked_score: float = Field(description="the score with all of ``words`` removed together")
    action: Literal["allow", "flag", "block"] | None = Field(
        default=None,
        description="what the policy does at this category's score; null for the classifier",
        json_schema_extra={"nullable": True},
    )
    words: list[ExplainedWord] = Field(
        description="the words whose removal lowers the score most, largest contribution first (at most 3)"
    )

    @classmethod
    def of(cls, model: Literal["guard", "classifier"], label: LabelExplanation) -> ExplainedLabel:
        return cls(
            model=model,
            label=label.label,
            score=round(label.score, 6),
            masked_score=round(label.masked_score, 6),
            action=label.action,
            words=[
                ExplainedWord(start=w.start, end=w.end, word=w.word, contribution=round(w.contribution, 6))
                for w in label.words
            ],
        )


class ItemExplanation(BaseModel):
    """Why the item got its decision: occlusion (docs/guardrails.md, "Explanations").

    Each word is removed in turn and the text scored again; a word's contribution is how
    much the score falls. It is computed after the decision and never changes it.
    """

    model_config = ConfigDict(json_schema_extra={"example": _EXPLANATION_EXAMPLE})

    words_total: int = Field(description="words in the text")
    words_occluded: int = Field(description="words removed one by one (the first 32); 0 when nothing was explained")
    truncated: bool = Field(description="some words were not occluded (a text longer than 32 words)")
    labels: list[ExplainedLabel] = Field(
        description="each toxicity category that flagged or blocked the item, then the classifier's label "
        "when the item was not blocked; empty when neither applies"
    )
    error: str | None = Field(
        default=None,
        description="why the explanation could not be computed (the decision stands)",
        json_schema_extra={"nullable": True},
    )

    @classmethod
    def of(cls, guard: Explanation | None, classifier: Explanation | None) -> ItemExplanation:
        """One item's explanation from the guard's and the classifier's (same words, same text)."""
        parts = [part for part in (guard, classifier) if part is not None]
        explained = [part for part in parts if part.labels]
        source = explained[0] if explained else (parts[0] if parts else None)
        labels = [ExplainedLabel.of("guard", label) for label in (guard.labels if guard else ())]
        labels += [ExplainedLabel.of("classifier", label) for label in (classifier.labels if classifier else ())]
        return cls(
            words_total=source.words_total if source else 0,
            words_occluded=source.words_occluded if source else 0,
            truncated=any(part.truncated for part in parts),
            labels=labels,
        )


class ClassifyResult(BaseModel):
    """The decision for one item."""

    model_config = ConfigDict(json_schema_extra={"example": _RESULT_EXAMPLE})

    request_id: str = Field(description="unique id of this item's decision")
    label: str | None = Field(
        description="the classifier's label; null when the item was blocked", json_schema_extra={"nullable": True}
    )
    scores: dict[str, float] = Field(description="probability per label; empty when blocked")
    action: Literal["allow", "flag", "block"] = Field(description="the guard's decision")
    reasons: list[Reason] = Field(description="why the item was flagged or blocked; empty when allowed")
    toxicity: dict[str, float] = Field(description="toxicity score of the input per category")
    groups: list[str] = Field(description="the groups the item was counted under")
    domain_score: float | None = Field(
        default=None,
        description="distance from the classifier's training domain over the build-time quantile of "
        "in-domain scores (above 1: out of domain); null when blocked or the domain monitor is off",
        json_schema_extra={"nullable": True},
    )
    explanation: ItemExplanation | None = Field(
        default=None,
        description='which words made the decision; only when the item asked ("explain": true)',
        json_schema_extra={"nullable": True},
    )


class WorkerInfo(BaseModel):
    """Which worker process answered: without Redis, window state is per worker (docs/fleet.md)."""

    pid: int
    index: int | None = Field(description="BentoML worker index (1-based), null outside a server")
    workers: int = Field(description="configured worker processes (FAIRGATE_WORKERS)")


class ModelInfo(BaseModel):
    role: Literal["classifier", "guard"]
    tag: str
    variant: Literal["int8", "fp32"]
    task: str
    labels: list[str]


class GuardrailsStatusResponse(BaseModel):
    """The live view of the guardrails in the worker that answered."""

    ready: bool
    error: str | None = Field(default=None, description="why the worker is not ready, if it is not")
    worker: WorkerInfo
    window_scope: Literal["worker", "fleet"] = Field(
        default="worker",
        description="worker: rate windows and alerts of this worker process; fleet: shared in Redis by "
        "every worker and replica (FAIRGATE_REDIS_URL), the same from whichever worker answers",
    )
    degraded: bool = Field(
        default=False,
        description="Redis is unavailable: the figures are this worker's own windows and rates.on_error "
        "applies to the items until it answers again",
    )
    policy_path: str | None = None
    policy_version: str | None = None
    models: list[ModelInfo] = Field(default_factory=list)
    shared_tokenization: bool | None = Field(
        default=None, description="classifier and guard share one tokenizer call per batch"
    )
    guardrails: GuardStatus | None = Field(
        default=None, description="per-monitor, per-group windows, rates, impact ratios and alerts"
    )

    @model_validator(mode="after")
    def _scope_of_the_guardrails(self) -> GuardrailsStatusResponse:
        """Scope and health are the guard's: copied up so clients need not look inside."""
        if self.guardrails is not None:
            self.window_scope = self.guardrails.window_scope
            self.degraded = self.guardrails.degraded
        return self
