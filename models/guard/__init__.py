"""The toxicity guard model, ``fairgate-toxicity``: built, converted and evaluated.

Sources (``fairgate build guard --source ...``): ``bundled`` (our recipe on the
project's toxicity set, offline), ``detoxify:VARIANT`` (the published checkpoints),
``checkpoint:PATH`` with ``--hf-config DIR`` (a local Detoxify checkpoint, offline) and
``csv:PATH`` (the user's labelled data). Every route ends in the same multi-label model
directory (docs/CONTRACTS.md, section 1) with the six Detoxify categories.
"""

from models.guard._build import GUARD_NAME, GuardBuildConfig, GuardBuildResult, build_guard
from models.guard._categories import CATEGORIES, CATEGORY_ALIASES, canonical_category
from models.guard._checkpoint import ConvertedGuard, keep_categories, load_detoxify_checkpoint
from models.guard._csv import GuardDataset, LabelRule, read_guard_csv
from models.guard._detoxify_hub import fetch_detoxify
from models.guard._errors import (
    CheckpointFormatError,
    GuardBuildError,
    GuardDataError,
    SourceSpecError,
    SourceUnavailableError,
)
from models.guard._source import (
    DETOXIFY_VARIANTS,
    BundledSource,
    CheckpointSource,
    CsvSource,
    DetoxifySource,
    GuardSource,
    parse_source,
)

__all__ = [
    "CATEGORIES",
    "CATEGORY_ALIASES",
    "DETOXIFY_VARIANTS",
    "GUARD_NAME",
    "GuardBuildConfig",
    "GuardBuildResult",
    "build_guard",
    "BundledSource",
    "CheckpointFormatError",
    "CheckpointSource",
    "ConvertedGuard",
    "CsvSource",
    "DetoxifySource",
    "GuardBuildError",
    "GuardDataError",
    "GuardDataset",
    "GuardSource",
    "LabelRule",
    "SourceSpecError",
    "SourceUnavailableError",
    "canonical_category",
    "fetch_detoxify",
    "keep_categories",
    "load_detoxify_checkpoint",
    "parse_source",
    "read_guard_csv",
]
