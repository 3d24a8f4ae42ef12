"""fairgate: serve fine-tuned transformer classifiers behind live toxicity and per-group bias guardrails.

The one installed top-level name. Its subpackages live in the repository's top-level folders
(``guardrails/``, ``models/``, ``service/``) and are mapped here by ``pyproject.toml``:

- :mod:`fairgate.guardrails`: the embeddable monitors and the contracts between packages
  (no BentoML, torch or server needed);
- :mod:`fairgate.models`: transfer learning, ONNX export and the BentoML model store
  (the ``[train]`` extra);
- :mod:`fairgate.service`: the BentoML service and the ``fairgate`` command line.

Importing this package does nothing else: each subpackage is imported when used.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fairgate")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
