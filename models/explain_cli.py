"""``fairgate explain TEXT``: which words made the guard (or the classifier) score a text so.

Registered into the one ``fairgate`` parser by ``fairgate.service.cli``. Loads a model from
the BentoML store (``--model``, the guard ``fairgate-toxicity`` by default) or a model
directory (``--model-dir``) with ONNX Runtime, and explains one text by occlusion
(:mod:`fairgate.guardrails.explain`): the guard's categories that flag or block under the
policy (``--policy``, the bundled default otherwise; ``--categories`` to choose), or a
classifier's predicted label. Prints the text with the top words highlighted and a table
of contributions, or one JSON object (``--json``).

It lives in ``models`` because it reads the store (``fairgate.models.store``); the
explanation itself is the library's, so a product gets the same from ``Guard.explain``.
The fp32 variant is the default, unlike ``fairgate calibrate``'s int8: an int8 model
quantises activations per batch, so a row's score moves with its batch-mates, and an
explanation is differences between rows (docs/guardrails.md, "Explanations").
Highlighting uses rich's styles on a terminal and ``[[word]]`` markers elsewhere (a pipe,
a file, no rich installed), so the output stays readable as plain text.

Exit codes: 0 ok, 1 a model, policy or category that cannot be used, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fairgate.guardrails.explain import Explanation

__all__ = ["DEFAULT_MODEL", "EXIT_ERROR", "highlight_plain", "register"]

# fairgate.models.guard.GUARD_NAME, spelled out: importing that package loads the build code.
DEFAULT_MODEL = "fairgate-toxicity"
EXIT_ERROR = 1
OPEN, CLOSE = "[[", "]]"


def register(subparsers: Any, build_subparsers: Any) -> None:
    """Add ``explain`` to the ``fairgate`` command."""
    del build_subparsers  # nothing to build
    p = subparsers.add_parser(
        "explain",
        help="show which words made the guard (or the classifier) score a text",
        description="Explain one text by occlusion: score it once per word with that word removed, and "
        "show the words whose removal lowers the score most. With the guard (the default), the "
        "categories that flag or block under the policy are explained; with a classifier, its "
        "predicted label. Runs the ONNX model, like serving.",
    )
    p.add_argument("text", metavar="TEXT", help="the text to explain; - reads it from standard input")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--model", default=None, help=f"model in the BentoML store, NAME or NAME:VERSION (default {DEFAULT_MODEL})"
    )
    source.add_argument("--model-dir", default=None, help="a fairgate model directory instead of the store")
    p.add_argument("--variant", choices=["int8", "fp32"], default="fp32",
                   help="ONNX variant (default fp32: exact contributions; int8, what serving runs, scores a row "
                   "slightly differently depending on the rows batched with it, which blurs small contributions)")
    p.add_argument("--top-k", type=int, default=3, help="words per explained label (default 3)")
    p.add_argument("--max-words", type=int, default=None,
                   help="explain at most the first N words (default: the library's, 32)")
    p.add_argument("--categories", default=None,
                   help="guard only: comma-separated categories to explain whatever they score "
                   "(default: those that flag or block under the policy)")
    p.add_argument("--policy", default=None, help="guard only: policy YAML for the thresholds (default: bundled)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run)


def _error(message: str) -> int:
    print(f"fairgate explain: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _run(args: argparse.Namespace) -> int:
    from fairgate.guardrails.explain import ExplanationError
    from fairgate.guardrails.manifest import ModelDirectoryError
    from fairgate.guardrails.normalize import NormalizationError
    from fairgate.guardrails.policy import PolicyError
    from fairgate.models.errors import FairgateModelError

    text = sys.stdin.read().rstrip("\n") if args.text == "-" else args.text
    try:
        name, model = _load(args)
        if model.task == "multi_label_classification":
            report = _explain_guard(args, text, model)
        else:
            if args.categories is not None or args.policy is not None:
                return _error(f"{name} is a classifier; --categories and --policy are for the guard (drop them)")
            report = _explain_classifier(args, text, model)
    except (ExplanationError, ModelDirectoryError, NormalizationError, PolicyError, FairgateModelError) as error:
        return _error(str(error))
    report = {"model": name, "variant": args.variant, **report}
    if args.json:
        from fairgate.models.store import json_safe

        print(json.dumps(json_safe({**report, "explanation": report["explanation"].model_dump()}), indent=2))
        return 0
    _print(text, report)
    return 0


def _load(args: argparse.Namespace) -> tuple[str, Any]:
    from fairgate.guardrails.onnx_model import OnnxTextModel

    if args.model_dir is not None:
        return str(args.model_dir), OnnxTextModel.from_directory(args.model_dir, variant=args.variant)
    from fairgate.models.store import get_stored_model

    stored = get_stored_model(args.model or DEFAULT_MODEL)
    return stored.tag, OnnxTextModel.from_directory(stored.path, variant=args.variant)


def _max_words(args: argparse.Namespace) -> int:
    from fairgate.guardrails.explain import DEFAULT_MAX_WORDS

    return int(args.max_words) if args.max_words is not None else DEFAULT_MAX_WORDS


def _explain_guard(args: argparse.Namespace, text: str, model: Any) -> dict[str, Any]:
    """The guard under the policy: the screen's scores, then the flagged (or chosen) categories."""
    from prometheus_client import CollectorRegistry

    from fairgate.guardrails.guard import Guard
    from fairgate.guardrails.policy import load_policy
    from fairgate.guardrails.scorers import OnnxToxicityScorer

    policy = load_policy(args.policy)
    # A registry of its own: this one-off screen is not traffic anyone scrapes.
    guard = Guard(policy=policy, scorer=OnnxToxicityScorer(model=model), registry=CollectorRegistry())
    categories = None
    if args.categories is not None:
        categories = list(dict.fromkeys(c.strip() for c in args.categories.split(",") if c.strip()))
    (screen,) = guard.screen([text])
    (explanation,) = guard.explain(
        [text], categories=categories, screens=[screen], top_k=args.top_k, max_words=_max_words(args)
    )
    return {
        "policy": policy.version,
        "action": screen.action,
        "scores": dict(screen.toxicity),
        "explanation": explanation,
    }


def _explain_classifier(args: argparse.Namespace, text: str, model: Any) -> dict[str, Any]:
    from fairgate.guardrails.explain import explain_prediction

    (explanation,) = explain_prediction(model, [text], top_k=args.top_k, max_words=_max_words(args))
    scores = {}
    if explanation.labels:
        scores = {explanation.labels[0].label: explanation.labels[0].score}
    return {"scores": scores, "explanation": explanation}


def highlight_plain(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each ``(start, end)`` span wrapped in ``[[`` ``]]`` (spans never overlap)."""
    pieces: list[str] = []
    position = 0
    for start, end in sorted(set(spans)):
        pieces.extend((text[position:start], OPEN, text[start:end], CLOSE))
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _print(text: str, report: dict[str, Any]) -> None:
    explanation: Explanation = report["explanation"]
    head = f"{report['model']} ({report['variant']})"
    if "policy" in report:
        head += f", policy {report['policy']}: {report['action']}"
    print(f"{head}; {explanation.words_total} words")
    if not explanation.labels:
        scores = ", ".join(f"{name} {value:.3f}" for name, value in report["scores"].items())
        print(f"scores: {scores}")
        print("nothing flags or blocks under the policy, so nothing is explained; "
              "pass --categories toxicity,insult to explain categories anyway")
        return
    spans = [(w.start, w.end) for label in explanation.labels for w in label.words]
    headers = ["label", "action", "score", "masked", "#", "word", "offsets", "contribution"]
    rows = []
    for label in explanation.labels:
        lead = [label.label, label.action or "-", f"{label.score:.3f}", f"{label.masked_score:.3f}"]
        if not label.words:
            rows.append([*lead, "-", "(no word lowers the score)", "-", "-"])
        for rank, word in enumerate(label.words, start=1):
            rows.append([*lead, str(rank), word.word, f"{word.start}-{word.end}", _signed(word.contribution)])
            lead = ["", "", "", ""]
    _show(text, spans, headers, rows)
    if explanation.truncated:
        print(f"note: only the first {explanation.words_occluded} of {explanation.words_total} words were "
              "explained (--max-words)")
    print("contribution: how much the score falls when that word alone is removed; "
          "masked: the score with the label's top words removed together")


def _signed(value: float) -> str:
    """``+0.952``; a drop too small for three decimals in scientific form, not as ``+0.000``."""
    return f"{value:+.3f}" if abs(value) >= 0.0005 else f"{value:+.1e}"


def _show(text: str, spans: list[tuple[int, int]], headers: list[str], rows: list[list[str]]) -> None:
    """Rich styles and a rich table on a terminal; ``[[word]]`` and aligned columns otherwise."""
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text
    except ImportError:
        console = None
    else:
        console = Console(file=sys.stdout)
    if console is None or not console.is_terminal:
        print(highlight_plain(text, spans))
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        for line in (headers, *rows):
            print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        return
    marked = Text(text)  # Text, not markup: the user's text may hold [brackets]
    for start, end in set(spans):
        marked.stylize("bold red reverse", start, end)
    console.print(marked)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    longest = max(len(row[headers.index("word")]) for row in rows)
    for header in headers:
        if header == "word":  # the one column that folds (a URL); the figures are never cut
            table.add_column(header, min_width=min(longest, 10), overflow="fold")
        else:
            table.add_column(header, justify="right" if header in ("score", "masked", "contribution") else "left",
                             no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)
