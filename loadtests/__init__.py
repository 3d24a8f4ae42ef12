"""Load scenarios and the benchmark harness for fairgate.

Run ``python -m loadtests.bench`` (``make bench``) for the benchmark, ``locust -f
loadtests/locustfile.py`` for closed-loop scenarios and ``python -m loadtests.openloop``
for constant-arrival-rate load. See docs/benchmark.md.

This package is a tool of the repository, not part of the installed distribution; it
imports neither locust nor BentoML at import time.
"""

from __future__ import annotations

from loadtests._drivers import PhaseResult, RequestRecord, arrival_offsets, run_closed_loop, run_open_loop
from loadtests._http import HttpSender, encode_bodies
from loadtests._report import TARGETS, format_table, headline
from loadtests._stats import LatencySummary, percentile, ratio, summarize
from loadtests._texts import TextCorpus, TextSourceError, load_corpus, make_items

__all__ = [
    "TARGETS",
    "HttpSender",
    "LatencySummary",
    "PhaseResult",
    "RequestRecord",
    "TextCorpus",
    "TextSourceError",
    "arrival_offsets",
    "encode_bodies",
    "format_table",
    "headline",
    "load_corpus",
    "make_items",
    "percentile",
    "ratio",
    "run_closed_loop",
    "run_open_loop",
    "summarize",
]
