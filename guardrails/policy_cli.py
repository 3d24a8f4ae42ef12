"""``fairgate policy check FILE`` and ``fairgate policy schema`` (registered by service/cli.py).

A policy is edited by people under pressure, so it can be checked before it is deployed
(in CI, or before ``kill -HUP``): ``check`` runs exactly the validation the service runs at
start (:meth:`Policy.from_yaml`), exits 0 with a one-line summary when the file is valid,
and 1 with every problem (key, value, fix) when it is not. ``schema`` prints the policy's
JSON Schema for editors, e.g. with the YAML language server::

    fairgate policy schema > policy.schema.json
    # first line of the policy file:
    # yaml-language-server: $schema=policy.schema.json

Imports pydantic and PyYAML only (no ONNX Runtime, no BentoML): checking a file is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fairgate.guardrails.policy import Policy

__all__ = ["describe", "policy_json_schema", "register"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def register(subparsers: Any, build_subparsers: Any) -> None:
    """Add ``policy check`` and ``policy schema`` to the ``fairgate`` command."""
    del build_subparsers  # nothing to build
    policy = subparsers.add_parser("policy", help="check a guardrails policy file, or print its JSON Schema")
    actions = policy.add_subparsers(dest="policy_command", metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="validate policy files as the service does at start",
        description=(
            "Validate each FILE with the service's own policy model. Valid: one summary line per "
            "file, exit 0. Invalid: every problem with its key, value and fix on standard error, exit 1."
        ),
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="policy YAML file")
    check.set_defaults(handler=_check)
    schema = actions.add_parser(
        "schema",
        help="print the policy's JSON Schema (for editors)",
        description="Print the JSON Schema of a policy file, for editor completion and validation.",
    )
    schema.set_defaults(handler=_schema)
    policy.set_defaults(handler=lambda args: (policy.print_help(), 2)[1])


def describe(policy: Policy) -> str:
    """One line: what a valid policy does (version, groups, toxicity, rate monitors)."""
    parts = [f"version {policy.version}"]
    if not policy.enabled:
        return f"version {policy.version}, every monitor off (enabled: false)"
    groups = policy.groups
    parts.append(f"{len(groups.allowed)} groups from {groups.source}")
    toxicity = policy.toxicity
    if toxicity.enabled:
        blocking = sum(t.block is not None for t in toxicity.categories.values())
        parts.append(
            f"toxicity on {len(toxicity.categories)} categories ({blocking} blocking, on_error {toxicity.on_error})"
        )
    else:
        parts.append("toxicity off")
    rates = policy.rates
    if rates.enabled:
        window = ", ".join(f"{k} {v:g}" for k, v in rates.window.model_dump().items() if v is not None)
        bounds = []
        if rates.impact_ratio is not None:
            bounds.append(f"impact ratio >= {rates.impact_ratio.min:g}")
        if rates.parity_difference is not None:
            bounds.append(f"parity difference <= {rates.parity_difference.max:g}")
        monitors = ", ".join(m.name for m in rates.monitors)
        parts.append(
            f"{len(rates.monitors)} rate monitors ({monitors}; window {window}; {' and '.join(bounds)}; "
            f"action {rates.action})"
        )
    else:
        parts.append("rates off")
    return ", ".join(parts)


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file (validation mode: what may be written in it)."""
    from fairgate.guardrails.policy import Policy

    schema = Policy.model_json_schema(mode="validation")
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "fairgate guardrails policy",
        "description": "A fairgate policy file (guardrails/data/default_policy.yaml is the reference); "
        "check one with `fairgate policy check FILE`.",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def _check(args: argparse.Namespace) -> int:
    from fairgate.guardrails.policy import Policy, PolicyError

    failed = 0
    for file in args.files:
        try:
            policy = Policy.from_yaml(file)
        except PolicyError as error:
            failed += 1
            print(f"{error}", file=sys.stderr)
            continue
        print(f"{file}: valid policy, {describe(policy)}")
    if failed:
        print(
            f"fairgate policy check: {failed} of {len(args.files)} files invalid; fix the keys named above "
            "(docs/guardrails.md has every key)",
            file=sys.stderr,
        )
        return 1
    return 0


def _schema(args: argparse.Namespace) -> int:
    del args
    print(json.dumps(policy_json_schema(), indent=2, sort_keys=False))
    return 0
