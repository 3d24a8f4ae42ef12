"""``fairgate audit export``: the audit trail as JSONL, for auditors and other systems.

Registered by :mod:`fairgate.service.cli`; imports nothing heavy (SQLite and pydantic only).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any, build_subparsers: Any) -> None:
    """Add ``audit export`` to the ``fairgate`` command."""
    audit = subparsers.add_parser("audit", help="read the audit trail of flagged and blocked decisions")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    export = audit_sub.add_parser(
        "export",
        help="write flag/block decisions as JSON lines",
        description=(
            "Write every flagged or blocked decision in [--since, --until) as one JSON object per "
            "line, oldest first. Times are ISO 8601 (naive = UTC) or spans back from now (30m, 2h, 7d)."
        ),
    )
    export.add_argument("--since", required=True, help="start time, inclusive (e.g. 2026-11-22T00:00Z or 24h)")
    export.add_argument("--until", default=None, help="end time, exclusive (default: now)")
    export.add_argument(
        "--db",
        default=None,
        help="audit database (default: FAIRGATE_AUDIT_DB, else $BENTOML_HOME/fairgate/audit.sqlite3)",
    )
    export.add_argument("--out", default="-", help="output file (default: standard output)")
    export.set_defaults(handler=_export)
    audit.set_defaults(handler=lambda args: (audit.print_help(), 2)[1])


def _export(args: argparse.Namespace) -> int:
    from fairgate.service.audit import AuditError, SQLiteAuditStore, export_jsonl, parse_time
    from fairgate.service.settings import FairgateSettings, SettingsError

    try:
        since = parse_time(args.since, option="--since")
        until = parse_time(args.until, option="--until") if args.until else None
    except ValueError as error:
        print(f"fairgate audit export: {error}", file=sys.stderr)
        return 2
    if until is not None and until <= since:
        print(f"fairgate audit export: --until {args.until} is not after --since {args.since}", file=sys.stderr)
        return 2
    if args.db:
        location = args.db
    else:
        try:
            location = FairgateSettings.from_env().audit.location()
        except SettingsError as error:
            print(f"fairgate audit export: {error}", file=sys.stderr)
            return 2
    location = location.removeprefix("sqlite://")
    try:
        store = SQLiteAuditStore(path=location, readonly=True)
    except AuditError as error:
        print(f"fairgate audit export: {error}", file=sys.stderr)
        return 1
    try:
        if args.out == "-":
            written = export_jsonl(store, sys.stdout, since=since, until=until)
        else:
            with open(args.out, "w", encoding="utf-8") as out:
                written = export_jsonl(store, out, since=since, until=until)
    finally:
        store.close()
    print(f"exported {written} audit records from {store.path}", file=sys.stderr)
    return 0
