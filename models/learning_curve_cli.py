"""``fairgate report transfer``: learning curves of fine-tuning, feature extraction and TF-IDF.

Registered by :func:`fairgate.models.cli.register`. Writes ``learning_curve.png``,
``learning_curve.md`` and ``learning_curve.json`` into ``--output-dir`` and prints the
table (or the JSON with ``--json``). Exit codes: 0 ok (also with a negative-transfer
warning, which is printed), 1 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fairgate.models.finetune import FinetuneConfig

__all__ = ["register_report"]


def register_report(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report transfer`` to the fairgate parser."""
    report = subparsers.add_parser("report", help="reports about models and data (transfer: learning curves)")
    reports = report.add_subparsers(dest="report", metavar="REPORT")
    p = reports.add_parser(
        "transfer",
        help="learning curves: fine-tuning vs feature extraction vs TF-IDF from scratch",
        description="Accuracy and macro-F1 on a fixed test split against the number of labelled "
        "training examples, for fine-tuning the encoder, feature extraction (frozen encoder + "
        "logistic regression) and a from-scratch TF-IDF + logistic regression baseline; each point "
        "the mean over seeds with its standard deviation. Warns when fine-tuning does not beat "
        "the baseline at the full size (negative transfer).",
    )
    p.add_argument("--base", default="bundled", help="encoder: bundled | HUB_ID | DIR (default: bundled)")
    p.add_argument("--data", default="bundled", help="training data: bundled | CSV/TSV/JSONL | HUB_ID")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--labels", default=None, help="comma-separated label names, in index order")
    p.add_argument("--hub-split", default="train")
    p.add_argument("--test-data", default=None, help="fixed test file (else a seeded 10%% split of --data)")
    p.add_argument("--max-samples", type=int, default=None, help="seeded sample of the data")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the sample and the test split (default: 0)")
    p.add_argument("--sizes", default="50,100,200,500,1000,all", help="training sizes; 'all' = the whole pool")
    p.add_argument("--seeds", type=int, default=3, help="seeds per point (default: 3)")
    p.add_argument("--methods", default="finetune,feature-extraction,feature-extraction-mean,tfidf",
                   help="comma-separated: finetune, feature-extraction, feature-extraction-mean, tfidf")
    p.add_argument("--finetune-epochs", type=int, default=2,
                   help="fine-tuning epochs per point (fewer than a build, for speed; default: 2)")
    p.add_argument("--min-steps", type=int, default=30,
                   help="at least this many optimiser steps on small sizes (more epochs, at most 20)")
    p.add_argument("--normalization", choices=["social", "none"], default="social")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--output-dir", required=True, help="where the plot, table and JSON go")
    p.add_argument("--title", default=None, help="plot title")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(handler=_handle_transfer)
    report.set_defaults(handler=lambda args: (report.print_help(), 1)[1])


def _handle_transfer(args: argparse.Namespace) -> int:
    from fairgate.guardrails.normalize import TextNormalization
    from fairgate.models.datasets import load_labelled_data
    from fairgate.models.encoder import resolve_encoder
    from fairgate.models.errors import FairgateModelError
    from fairgate.models.learning_curve import (
        CurveOptions,
        markdown_table,
        normalised,
        parse_sizes,
        run_learning_curve,
        split_pool_and_test,
        write_learning_curve,
    )
    from fairgate.models.pipeline import limit_torch_threads
    from fairgate.models.store import json_safe

    try:
        options = CurveOptions(
            sizes=parse_sizes(args.sizes),
            seeds=args.seeds,
            methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
            finetune_epochs=args.finetune_epochs,
            min_steps=args.min_steps,
        )
        limit_torch_threads(args.threads)
        data = load_labelled_data(
            args.data, text_column=args.text_column, label_column=args.label_column,
            labels=[l.strip() for l in args.labels.split(",")] if args.labels else None,
            max_samples=args.max_samples, seed=args.split_seed, hub_split=args.hub_split,
        )
        test = None
        if args.test_data:
            test = load_labelled_data(args.test_data, text_column=args.text_column,
                                      label_column=args.label_column, labels=list(data.labels))
        pool, test = split_pool_and_test(data, test=test, seed=args.split_seed)
        normalization = TextNormalization.social() if args.normalization == "social" else TextNormalization.none()
        result = run_learning_curve(
            pool=normalised(pool, normalization),
            test=normalised(test, normalization),
            encoder=resolve_encoder(args.base),
            finetune_config=_classifier_recipe(),
            options=options,
        )
    except (FairgateModelError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    paths = write_learning_curve(result, args.output_dir, title=args.title)
    if args.json:
        print(json.dumps(json_safe({**result, "files": {k: str(v) for k, v in paths.items()}}), indent=2))
        return 0
    print("\n".join(markdown_table(result)))
    print(f"\nwrote {paths['plot']}, {paths['table']}, {paths['json']}")
    if result.get("warning"):
        print(f"warning: {result['warning']}", file=sys.stderr)
    return 0


def _classifier_recipe() -> FinetuneConfig:
    """``build classifier``'s fine-tuning recipe (its defaults), so the curve measures what a build trains."""
    from fairgate.models import classifier
    from fairgate.models.finetune import FinetuneConfig

    recipe = getattr(classifier, "CLASSIFIER_FINETUNE", None)
    return recipe if isinstance(recipe, FinetuneConfig) else FinetuneConfig()
