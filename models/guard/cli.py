"""``fairgate build guard``: build ``fairgate-toxicity`` into the BentoML store.

Registered by ``service/cli.py`` through :func:`register`. Heavy imports happen in the
handler, so ``fairgate --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register"]

_EPILOG = """sources:
  bundled                     MiniLM fine-tuned on the project's toxicity set (offline, default)
  detoxify:VARIANT            original, unbiased, multilingual, original-small, unbiased-small
                              (downloads the published checkpoint; needs the internet)
  checkpoint:PATH             a local Detoxify checkpoint; needs --hf-config DIR (offline)
  csv:PATH                    your labelled CSV: one 0/1 column per category, a single
                              'toxic' column, or --label-map (e.g. toxicity=class:0,1)
"""


def register(subparsers: argparse._SubParsersAction, build_subparsers: argparse._SubParsersAction) -> None:
    """Add ``build guard`` to the ``fairgate`` command."""
    parser = build_subparsers.add_parser(
        "guard",
        help="build the toxicity guard (fairgate-toxicity)",
        description="Build the multi-label toxicity guard, export it to ONNX with a parity "
        "check, evaluate it, and store it in the BentoML model store.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", default="bundled", help="where the guard comes from (default: bundled)")
    parser.add_argument("--hf-config", type=Path, help="config + tokenizer directory for checkpoint:PATH")
    parser.add_argument("--name", default="fairgate-toxicity", help="store name (default: fairgate-toxicity)")
    parser.add_argument("--base", default="bundled", help="encoder to fine-tune for bundled/csv (default: bundled MiniLM)")
    parser.add_argument("--label-map", action="append", default=[], metavar="CATEGORY=COLUMN[:V1,V2]",
                        help="csv: which column (and values) give a category; repeatable")
    parser.add_argument("--text-column", help="csv: the text column (default: text, comment_text, tweet, ...)")
    parser.add_argument("--soft-labels", action="store_true", help="csv: accept rater fractions in [0, 1]")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-4,
                        help="peak LR (default 3e-4, for the bundled MiniLM with 4 frozen layers; 2e-5 to 5e-5 "
                        "for a BERT-base encoder)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--class-weights", choices=("none", "balanced"), default="none",
                        help="BCE pos_weight per category (default none: keeps scores calibrated)")
    parser.add_argument("--max-train-rows", type=int, help="cap the training rows (seeded sample)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="held-out share (default 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch/ONNX threads (default: all cores; 1 on a busy machine)")
    parser.add_argument("--test-split-out", type=Path,
                        help="bundled/csv: write the held-out rows here (to score other models on them)")
    parser.add_argument("--identity-data", type=Path, help="identity set for per-group FPR (default: bundled)")
    parser.add_argument("--parity-tolerance", type=float, default=1e-3, help="fp32 max |logit diff|")
    parser.add_argument("--int8-min-agreement", type=float, default=0.99,
                        help="minimum int8 agreement of thresholded labels")
    parser.add_argument("--quantization-mode", choices=("auto", "static", "dynamic"), default="auto",
                        help="int8: auto (default) = static, calibrated on the training texts, when it passes "
                        "parity, else dynamic; static/dynamic force one (docs/models.md)")
    parser.add_argument("--calibration-method", choices=("minmax", "entropy", "percentile"), default="minmax",
                        help="static int8 activation ranges (default: minmax)")
    fair = parser.add_argument_group("fairness and robustness (docs/guard.md)")
    fair.add_argument("--normalization", choices=("auto", "social", "none"), default="auto",
                      help="input normalisation, recorded in the manifest (auto: social for trained guards)")
    fair.add_argument("--counterfactual-variants", type=int, default=1,
                      help="identity-swapped copies per training text that names a group (0: off)")
    fair.add_argument("--cross-group-variants", type=int, default=4,
                      help="copies of each toxic training text that names one group, about groups "
                      "of other axes (0: off)")
    fair.add_argument("--counterfactual-weight", type=float, default=2.0,
                      help="counterfactual logit pairing weight (0: off)")
    fair.add_argument("--counterfactual-space", choices=("probability", "logit"), default="probability",
                      help="pair probabilities (default; keeps confident scores) or raw logits (Garg et al.)")
    fair.add_argument("--noise-fraction", type=float, default=0.25,
                      help="share of training texts that gain a noisy social-media-form copy")
    fair.add_argument("--freeze-layers", type=int, default=None,
                      help="encoder layers kept frozen from the bottom (0: train all; default 4 for the "
                      "bundled MiniLM, 0 for any other base)")
    fair.add_argument("--train-embeddings", action="store_true",
                      help="fine-tune the word embeddings too (default: frozen)")
    fair.add_argument("--identity-eval-data", type=Path,
                      help="identity evaluation set for the report and gate (default: bundled)")
    fair.add_argument("--no-fairness-gate", action="store_true",
                      help="store the guard even if it fails the fairness gate (recorded in the metadata)")
    fair.add_argument("--fairness-max-flag-rate", type=float, default=0.05,
                      help="gate: most benign identity rows flagged, overall and per group")
    fair.add_argument("--fairness-max-spread", type=float, default=0.10,
                      help="gate: largest flag-rate difference between groups")
    fair.add_argument("--rejected-out", type=Path,
                      help="write a guard the fairness gate refuses to this directory (never stored)")
    fair.add_argument("--calibration-data", type=Path,
                      help="benign texts never trained on, for the recommended thresholds (default: bundled)")
    fair.add_argument("--max-false-block", type=float, default=0.01)
    fair.add_argument("--max-false-flag", type=float, default=0.05)
    fair.add_argument("--calibration-confidence", type=float, default=0.95)
    parser.add_argument("--if-missing", action="store_true", help="do nothing when NAME is already stored")
    parser.add_argument("--json", action="store_true", help="print the stored metadata as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_handle_build_guard)


def _handle_build_guard(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from fairgate.models.errors import DeployGateError, FairgateModelError
    from fairgate.models.guard._build import GuardBuildConfig, build_guard
    from fairgate.models.store import model_exists

    if args.if_missing and model_exists(args.name):
        print(f"{args.name} is already in the store; nothing to do (--if-missing)")
        return 0
    try:
        config = GuardBuildConfig(
            source=args.source,
            hf_config=args.hf_config,
            name=args.name,
            base=args.base,
            label_map=tuple(args.label_map),
            text_column=args.text_column,
            soft_labels=args.soft_labels,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            max_length=args.max_length,
            class_weights=args.class_weights,
            max_train_rows=args.max_train_rows,
            test_fraction=args.test_fraction,
            seed=args.seed,
            identity_data=args.identity_data,
            parity_tolerance=args.parity_tolerance,
            int8_min_agreement=args.int8_min_agreement,
            quantization_mode=args.quantization_mode,
            calibration_method=args.calibration_method,
            test_split_out=args.test_split_out,
            threads=args.threads,
            normalization=args.normalization,
            counterfactual_variants=args.counterfactual_variants,
            cross_group_variants=args.cross_group_variants,
            counterfactual_weight=args.counterfactual_weight,
            counterfactual_space=args.counterfactual_space,
            noise_fraction=args.noise_fraction,
            freeze_embeddings=not args.train_embeddings,
            freeze_layers=args.freeze_layers,
            identity_eval_data=args.identity_eval_data,
            fairness_gate=not args.no_fairness_gate,
            fairness_max_flag_rate=args.fairness_max_flag_rate,
            fairness_max_spread=args.fairness_max_spread,
            calibration_data=args.calibration_data,
            max_false_block=args.max_false_block,
            max_false_flag=args.max_false_flag,
            calibration_confidence=args.calibration_confidence,
            rejected_out=args.rejected_out,
        )
        result = build_guard(config, progress=not args.no_progress)
    except ValidationError as error:
        print(f"fairgate build guard: invalid option: {error}", file=sys.stderr)
        return 2
    except DeployGateError as error:  # the fairness gate: nothing was stored
        print(f"fairgate build guard: {error}", file=sys.stderr)
        return 3
    except FairgateModelError as error:
        print(f"fairgate build guard: {error}", file=sys.stderr)
        return 1
    if args.json:
        from fairgate.models.store import json_safe

        print(json.dumps(json_safe(result.metadata), indent=2, default=str))
    else:
        print(_summary(result.tag, result.metadata))
    return 0


def _summary(tag: str, metadata: dict) -> str:
    from fairgate.models.card import fmt
    from fairgate.models.guard._thresholds import describe_categories

    parity = metadata.get("parity", {})
    lines = [
        f"stored {tag} (source {metadata.get('source')})",
        f"  parity: fp32 max |logit diff| {parity.get('fp32_max_abs_diff', float('nan')):.2e}, "
        f"int8 label agreement {fmt(parity.get('int8_label_agreement'))} on {parity.get('n')} texts",
    ]
    evaluation = metadata.get("evaluation", {})
    for category, row in evaluation.get("per_category", {}).items():
        lines.append(f"  ROC AUC {category}: {fmt(row.get('roc_auc'))} ({row.get('positives')} positive)")
    identity = metadata.get("identity_fpr", {})
    if "spread" in identity:
        lines.append(
            f"  identity FPR (toxicity >= {identity.get('threshold')}): overall "
            f"{fmt(identity.get('overall_fpr'))}, worst {identity.get('worst_group')} / best "
            f"{identity.get('best_group')}, spread {fmt(identity.get('spread'))}"
        )
    recommended = metadata.get("recommended_thresholds", {})
    if "block" in recommended:
        lines.append(
            f"  recommended thresholds: {describe_categories(recommended.get('categories', {}))} "
            f"(calibrated flag {recommended['flag']['applied']}, block {recommended['block']['applied']}; "
            f"{recommended['guarantee']}; n={recommended['n']})"
        )
    report = metadata.get("identity_report", {})
    if "benign_flag_rate" in report:
        gap = report.get("counterfactual_gap", {})
        lines.append(
            f"  identity eval: benign flag rate {fmt(report['benign_flag_rate'])}, spread "
            f"{fmt(report['flag_rate_spread'])}, toxic recall {fmt(report['toxic_recall_flag'])}, "
            f"mean counterfactual gap {fmt(gap.get('mean_gap'))}; fairness gate "
            f"{metadata.get('fairness_gate', {}).get('status')}"
        )
    untrained = metadata.get("untrained_categories")
    if untrained:
        lines.append(f"  WARNING: not trained for {', '.join(untrained)} (no labels); outputs disabled")
    return "\n".join(lines)
