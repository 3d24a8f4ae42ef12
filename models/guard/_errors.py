"""The guard's exceptions. Each message names the bad value and the fix.

They extend the pipeline's (``fairgate.models.errors``), so ``fairgate`` reports them the same
way: one line, no traceback.
"""

from __future__ import annotations

from fairgate.models.errors import DataError, FairgateModelError


class GuardBuildError(FairgateModelError):
    """Base class: building ``fairgate-toxicity`` cannot go on."""


class SourceUnavailableError(GuardBuildError):
    """A guard source needs something this machine does not have (network, files)."""


class SourceSpecError(GuardBuildError, ValueError):
    """A ``--source`` string (or its companion options) is malformed."""


class CheckpointFormatError(GuardBuildError, ValueError):
    """A Detoxify checkpoint does not have the layout ``detoxify.load_checkpoint`` reads."""


class GuardDataError(GuardBuildError, DataError):
    """A labelled CSV for the guard cannot be read as multi-label toxicity data."""
