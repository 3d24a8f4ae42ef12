"""The ``fairgate`` command: one entry point, subcommands registered by their owners.

Each package registers its own subcommands (``fairgate.models.cli``, ``fairgate.models.guard.cli``,
``fairgate.guardrails.simulate_cli``, ``fairgate.guardrails.policy_cli``, ``fairgate.service.audit_cli``,
``fairgate.service.serve_cli``), so
this module only composes them.
Heavy imports (torch, bentoml) happen inside the handlers, never here, so that
``fairgate --help`` is instant and serving never pulls in training code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from fairgate import __version__

# (module, function) pairs; each function takes (subparsers, build_subparsers).
_REGISTRARS: tuple[tuple[str, str], ...] = (
    ("fairgate.models.cli", "register"),
    ("fairgate.models.guard.cli", "register"),
    ("fairgate.models.calibrate_cli", "register"),
    ("fairgate.guardrails.simulate_cli", "register"),
    ("fairgate.guardrails.policy_cli", "register"),
    ("fairgate.models.explain_cli", "register"),
    ("fairgate.service.audit_cli", "register"),
    ("fairgate.service.serve_cli", "register"),
)


def build_parser() -> argparse.ArgumentParser:
    """Compose the parser from every package that registers subcommands."""
    parser = argparse.ArgumentParser(
        prog="fairgate",
        description="Fine-tune, export and serve classifiers behind live bias guardrails.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"fairgate {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    build = subparsers.add_parser("build", help="build a model into the BentoML store")
    build_subparsers = build.add_subparsers(dest="what", metavar="MODEL")
    for module_name, function_name in _REGISTRARS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        getattr(module, function_name)(subparsers, build_subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
