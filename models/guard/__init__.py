"""The toxicity guard model, ``fairgate-toxicity``: built, converted and evaluated.

Sources (``fairgate build guard --source ...``): ``bundled`` (our recipe on the
project's toxicity set, offline), ``detoxify:VARIANT`` (the published checkpoints),
``checkpoint:PATH`` with ``--hf-config DIR`` (a local Detoxify checkpoint, offline) and
``csv:PATH`` (the user's labelled data). Every route ends in the same multi-label model
directory (docs/CONTRACTS.md, section 1) with the six Detoxify categories.
"""

from fairgate.models.errors import FairnessGateError
from fairgate.models.guard._build import GUARD_NAME, GuardBuildConfig, GuardBuildResult, build_guard
from fairgate.models.guard._categories import CATEGORIES, CATEGORY_ALIASES, canonical_category
from fairgate.models.guard._checkpoint import ConvertedGuard, keep_categories, load_detoxify_checkpoint
from fairgate.models.guard._csv import GuardDataset, LabelRule, read_guard_csv
from fairgate.models.guard._detoxify_hub import fetch_detoxify
from fairgate.models.guard._errors import (
    CheckpointFormatError,
    GuardBuildError,
    GuardDataError,
    SourceSpecError,
    SourceUnavailableError,
)
from fairgate.models.guard._source import (
    DETOXIFY_VARIANTS,
    BundledSource,
    CheckpointSource,
    CsvSource,
    DetoxifySource,
    GuardSource,
    parse_source,
)
from fairgate.models.guard.fairness import (
    IdentityEvalSet,
    IdentityReport,
    bundled_identity_eval_path,
    check_fairness_gate,
    identity_report,
    measure_identity_report,
    read_identity_eval,
)

__all__ = [
    "CATEGORIES",
    "CATEGORY_ALIASES",
    "DETOXIFY_VARIANTS",
    "GUARD_NAME",
    "BundledSource",
    "CheckpointFormatError",
    "CheckpointSource",
    "ConvertedGuard",
    "CsvSource",
    "DetoxifySource",
    "FairnessGateError",
    "GuardBuildConfig",
    "GuardBuildError",
    "GuardBuildResult",
    "GuardDataError",
    "GuardDataset",
    "GuardSource",
    "IdentityEvalSet",
    "IdentityReport",
    "LabelRule",
    "SourceSpecError",
    "SourceUnavailableError",
    "build_guard",
    "bundled_identity_eval_path",
    "canonical_category",
    "check_fairness_gate",
    "fetch_detoxify",
    "identity_report",
    "keep_categories",
    "load_detoxify_checkpoint",
    "measure_identity_report",
    "parse_source",
    "read_guard_csv",
    "read_identity_eval",
]
