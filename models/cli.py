"""``fairgate build classifier``, ``fairgate evaluate``, ``fairgate models`` and ``fairgate quantize``.

Registered into the one ``fairgate`` parser by ``fairgate.service.cli``. Handlers import the
heavy libraries inside themselves (``fairgate --help`` stays instant), print their
result (the CLI is the one place that prints) and return the exit code:
0 ok, 1 bad input or missing model, 3 deploy gate failed, 4 export parity failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fairgate.models.card import fmt as _fmt

__all__ = ["EXIT_ERROR", "EXIT_GATE", "EXIT_PARITY", "register"]

EXIT_ERROR = 1
EXIT_GATE = 3
EXIT_PARITY = 4


def register(subparsers: argparse._SubParsersAction, build_subparsers: argparse._SubParsersAction) -> None:
    """Add ``build classifier``, ``evaluate`` and ``models`` to the fairgate parser."""
    _register_build(build_subparsers)
    _register_evaluate(subparsers)
    from fairgate.models.learning_curve_cli import register_report

    register_report(subparsers)
    models = subparsers.add_parser("models", help="list the fairgate models in the BentoML store")
    models.add_argument("--json", action="store_true", help="print one JSON array")
    models.set_defaults(handler=_handle_models)
    from fairgate.models.quantize_cli import register_quantize

    register_quantize(subparsers)


def _register_build(build_subparsers: argparse._SubParsersAction) -> None:
    p = build_subparsers.add_parser(
        "classifier",
        help="fine-tune, evaluate, export and store the task classifier",
        description="Fine-tune a pretrained encoder, evaluate it overall and per group, "
        "export it to ONNX (fp32 + int8), check parity and store it in the BentoML store.",
    )
    src = p.add_argument_group("sources")
    src.add_argument("--base", default="bundled", help="encoder: bundled | HUB_ID | DIR (default: bundled)")
    src.add_argument("--data", default="bundled", help="training data: bundled | CSV/TSV/JSONL | HUB_ID")
    src.add_argument("--text-column", default="text")
    src.add_argument("--label-column", default="label")
    src.add_argument("--group-column", default=None, help="group column for the per-group report")
    src.add_argument("--labels", default=None, help="comma-separated label names, in index order")
    src.add_argument("--hub-split", default="train", help="split of a hub dataset (default: train)")
    src.add_argument("--test-data", default=None, help="separate test file (else a split of --data)")
    src.add_argument(
        "--identity-data", default="bundled",
        help="identity set for the per-group report: bundled | PATH | none (default: bundled)",
    )
    src.add_argument("--max-samples", type=int, default=None, help="seeded sample of the data")
    # Defaults: the classifier's recipe (fairgate.models.classifier.CLASSIFIER_FINETUNE, chosen
    # by the search in docs/models.md); the guard's build has its own.
    from fairgate.models.classifier import CLASSIFIER_FINETUNE as recipe

    tr = p.add_argument_group("fine-tuning (defaults: the classifier recipe, docs/models.md)")
    tr.add_argument("--epochs", type=int, default=recipe.epochs, help="at most (default: %(default)s)")
    tr.add_argument("--batch-size", type=int, default=recipe.batch_size)
    tr.add_argument("--learning-rate", type=float, default=recipe.learning_rate, help="(default: %(default)s)")
    tr.add_argument("--layer-decay", type=float, default=recipe.layer_decay,
                    help="layer-wise LR decay (1 = none; default: %(default)s)")
    tr.add_argument("--weight-decay", type=float, default=recipe.weight_decay)
    tr.add_argument("--warmup-ratio", type=float, default=recipe.warmup_ratio)
    tr.add_argument("--max-length", type=int, default=recipe.max_length)
    tr.add_argument("--freeze-embeddings", action=argparse.BooleanOptionalAction, default=recipe.freeze_embeddings,
                    help="keep the embedding layer frozen (default: %(default)s)")
    tr.add_argument("--freeze-layers", type=int, default=recipe.freeze_layers,
                    help="freeze the first N encoder layers (default: %(default)s)")
    tr.add_argument("--class-weights", choices=["balanced", "none"], default=recipe.class_weights)
    tr.add_argument("--patience", type=int, default=recipe.early_stopping_patience,
                    help="early stopping patience (evaluations; 0 = off; default: %(default)s)")
    tr.add_argument("--evaluations-per-epoch", type=int, default=recipe.evaluations_per_epoch)
    tr.add_argument("--selection-metric", choices=["loss", "accuracy", "macro_f1"], default=recipe.selection_metric,
                    help="validation figure that picks the restored checkpoint and that early stopping "
                    "waits on (default: %(default)s)")
    tr.add_argument("--seed", type=int, default=recipe.seed)
    tr.add_argument("--strategy", choices=["finetune", "feature-extraction"], default="finetune",
                    help="finetune (default): train the encoder and head; feature-extraction: frozen "
                    "encoder + logistic-regression head on its pooled embedding (CPU, fast)")
    tr.add_argument("--learning-curve", action="store_true",
                    help="also measure learning curves (fine-tuning, feature extraction, TF-IDF) on this "
                    "build's data and test split, into the model card (fairgate report transfer)")
    tr.add_argument("--sizes", default="50,100,200,500,1000,all", help="learning-curve sizes (with --learning-curve)")
    tr.add_argument("--seeds", type=int, default=3, help="learning-curve seeds per point (with --learning-curve)")
    tr.add_argument("--curve-dir", default=None,
                    help="also write the learning-curve plot, table and JSON here (with --learning-curve)")
    tr.add_argument("--no-group-by-length", action="store_true",
                    help="plain shuffled batches (default: batches of similar lengths, less padding)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1 when the load average is at least the CPU count, else torch's)")
    gate = p.add_argument_group("evaluation and deploy gate")
    gate.add_argument("--positive-label", default=None, help="label for FPR/FNR (default: the last)")
    gate.add_argument("--min-group-size", type=int, default=5)
    gate.add_argument("--max-parity-difference", type=float, default=None)
    gate.add_argument("--min-impact-ratio", type=float, default=None)
    ex = p.add_argument_group("export and store")
    ex.add_argument("--name", default="fairgate-classifier", help="store name (default: fairgate-classifier)")
    ex.add_argument("--if-missing", action="store_true", help="exit 0 without work when NAME is stored")
    ex.add_argument(
        "--quantization",
        default="avx2",
        choices=["avx2", "auto", "avx512_vnni", "avx512", "arm64"],
        help="int8 config: avx2 (default; runs on every AVX2 host) or auto (match this CPU)",
    )
    ex.add_argument("--quantization-mode", choices=["auto", "static", "dynamic"], default="auto",
                    help="int8: auto (default) = static, calibrated on the training texts, when it passes "
                    "parity, else dynamic; static/dynamic force one (docs/models.md)")
    ex.add_argument("--calibration-method", choices=["minmax", "entropy", "percentile"], default="minmax",
                    help="static int8 activation ranges (default: minmax)")
    ex.add_argument("--normalization", choices=["social", "none"], default="social",
                    help="input normalisation trained with and recorded in the manifest (default: social)")
    ex.add_argument("--parity-tolerance", type=float, default=1e-3, help="fp32 max |logit diff|")
    ex.add_argument("--int8-min-agreement", type=float, default=0.99)
    ex.add_argument("--output-dir", default=None, help="also copy the model directory here")
    ex.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(handler=_handle_build)


def _register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a stored model on labelled data (overall and per group)",
        description="Accuracy, macro-F1, ROC AUC and the per-group report of a stored "
        "classifier; for the toxicity guard (multi-label), its ROC AUC per category and, when "
        "the data has a group column, the identity fairness report (per-group FPR at the flag "
        "and block thresholds, FNR, Subgroup/BPSN/BNSP AUC, counterfactual gap).",
    )
    p.add_argument("--model", required=True, help="store tag, e.g. fairgate-classifier or NAME:VERSION")
    p.add_argument("--data", required=True, help="CSV/TSV/JSONL file, bundled, or HUB_ID")
    p.add_argument("--text-column", default=None, help="default: text")
    p.add_argument("--label-column", default=None,
                   help="default: label (a guard: the first of label, toxic, toxicity present)")
    p.add_argument("--group-column", default=None,
                   help="group column for the per-group report (a guard: default group, when present)")
    p.add_argument("--template-column", default=None,
                   help="a guard: template column for the counterfactual gap (default: template_id, when present)")
    p.add_argument("--flag-threshold", type=float, default=None,
                   help="a guard: flag at toxicity >= this (default: the default policy's toxicity flag)")
    p.add_argument("--block-threshold", type=float, default=None,
                   help="a guard: block at toxicity >= this (default: the default policy's toxicity block)")
    p.add_argument("--positive-label", default=None)
    p.add_argument("--min-group-size", type=int, default=5,
                   help="rows a group needs for its figures (fewer: NaN, insufficient samples)")
    p.add_argument("--variant", choices=["int8", "fp32"], default="int8")
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--scores-out", default=None, help="write one CSV row of scores per input")
    p.set_defaults(handler=_handle_evaluate)


def _json_default(value: Any) -> Any:
    return str(value)


def _dumps(value: Any) -> str:
    from fairgate.models.store import json_safe

    return json.dumps(json_safe(value), indent=2, default=_json_default)


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _handle_build(args: argparse.Namespace) -> int:
    from fairgate.models.errors import DeployGateError, ExportParityError, FairgateModelError

    if args.if_missing:
        from fairgate.models.store import model_exists

        if model_exists(args.name):
            print(f"{args.name} is already in the BentoML store; nothing to do (--if-missing)")
            return 0
    from pydantic import ValidationError

    from fairgate.models.classifier import ClassifierBuildConfig, build_classifier
    from fairgate.models.finetune import FinetuneConfig

    try:
        config = ClassifierBuildConfig(
            name=args.name,
            base=args.base,
            data=args.data,
            text_column=args.text_column,
            label_column=args.label_column,
            group_column=args.group_column,
            labels=[l.strip() for l in args.labels.split(",")] if args.labels else None,
            hub_split=args.hub_split,
            test_data=args.test_data,
            identity_data=None if args.identity_data == "none" else args.identity_data,
            max_samples=args.max_samples,
            finetune=FinetuneConfig(
                epochs=args.epochs,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                layer_decay=args.layer_decay,
                weight_decay=args.weight_decay,
                warmup_ratio=args.warmup_ratio,
                max_length=args.max_length,
                freeze_embeddings=args.freeze_embeddings,
                freeze_layers=args.freeze_layers,
                class_weights=args.class_weights,
                early_stopping_patience=args.patience,
                evaluations_per_epoch=args.evaluations_per_epoch,
                selection_metric=args.selection_metric,
                seed=args.seed,
                group_by_length=not args.no_group_by_length,
            ),
            positive_label=args.positive_label,
            min_group_size=args.min_group_size,
            max_parity_difference=args.max_parity_difference,
            min_impact_ratio=args.min_impact_ratio,
            parity_tolerance=args.parity_tolerance,
            int8_min_agreement=args.int8_min_agreement,
            quantization=args.quantization,
            quantization_mode=args.quantization_mode,
            calibration_method=args.calibration_method,
            normalization=args.normalization,
            output_dir=args.output_dir,
            torch_threads=args.threads,
            strategy=args.strategy,
            learning_curve=_curve_options(args) if args.learning_curve else None,
            curve_dir=args.curve_dir,
        )
    except (ValidationError, ValueError) as error:
        _error(f"invalid option: {error}")
        return EXIT_ERROR
    try:
        result = build_classifier(config, progress=not args.no_progress)
    except DeployGateError as error:
        _error(f"{error}. The model was not stored.")
        return EXIT_GATE
    except ExportParityError as error:
        _error(str(error))
        return EXIT_PARITY
    except FairgateModelError as error:
        _error(str(error))
        return EXIT_ERROR
    if args.json:
        print(_dumps({"tag": result.tag, "seconds": result.seconds, "training": result.training,
                      "metrics": result.metrics,
                      "parity": result.parity, "export": result.export, "gate": result.gate}))
        return 0
    from fairgate.models.store import get_stored_model

    stored = get_stored_model(result.tag)
    m = result.metrics
    print(f"stored {result.tag} at {stored.path}")
    print(
        f"  test ({m['n']} texts, int8 ONNX): accuracy {_fmt(m['accuracy'])}, macro-F1 "
        f"{_fmt(m['macro_f1'])}, ROC AUC {_fmt(m['roc_auc'])}; fp32 ONNX accuracy "
        f"{_fmt(m['fp32_onnx']['accuracy'])}, PyTorch {_fmt(m['pytorch']['accuracy'])}"
    )
    print(
        f"  parity on {result.parity['n']} validation texts: fp32 max |logit diff| "
        f"{result.parity['fp32_max_abs_diff']:.2e}, int8 label agreement "
        f"{result.parity['int8_label_agreement']:.4f} (int8 for {result.export['quantization_target']})"
    )
    if result.per_group:
        for label, figures in result.per_group["parity"].items():
            print(
                f"  per group ({result.per_group['source']}): label {label!r} parity difference "
                f"{_fmt(figures['difference'])}, impact ratio {_fmt(figures['ratio'])} "
                f"(lowest {figures['lowest_group']}, highest {figures['highest_group']})"
            )
    for line in result.gate:
        print(f"  gate passed: {line}")
    if result.learning_curve is not None:
        print(f"  learning curves ({len(result.learning_curve['seeds'])} seeds): in the model card"
              + (f" and {args.curve_dir}" if args.curve_dir else ""))
        if result.learning_curve.get("warning"):
            print(f"  warning: {result.learning_curve['warning']}")
    print(f"  training {result.training['seconds']:.1f}s ({result.training['steps']} steps); "
          f"build {result.seconds:.1f}s; model card: {stored.path / 'MODEL_CARD.md'}")
    return 0


def _curve_options(args: argparse.Namespace) -> dict[str, Any]:
    from fairgate.models.learning_curve import parse_sizes

    return {"sizes": parse_sizes(args.sizes), "seeds": args.seeds}


def _handle_evaluate(args: argparse.Namespace) -> int:
    from fairgate.models.errors import FairgateModelError
    from fairgate.models.store import get_stored_model

    try:
        stored = get_stored_model(args.model)
        from fairgate.models.export import read_manifest

        task = read_manifest(stored.path)["task"]
        if task == "multi_label_classification":
            return _evaluate_guard(args, stored)
        return _evaluate_classifier(args, stored)
    except (FairgateModelError, ValueError, FileNotFoundError) as error:
        _error(str(error))
        return EXIT_ERROR


def _evaluate_guard(args: argparse.Namespace, stored: Any) -> int:
    try:
        from fairgate.models.guard.evaluation import evaluate_guard
    except ImportError as error:
        _error(
            f"{stored.tag} is a multi-label (guard) model and its evaluation "
            f"(models.guard.evaluation.evaluate_guard) is not available: {error}"
        )
        return EXIT_ERROR
    evaluation = evaluate_guard(
        stored.path,
        args.data,
        label_column=args.label_column,
        positive_label=args.positive_label,
        text_column=args.text_column,
        variant=args.variant,
        model_name=stored.tag,
        max_samples=args.max_samples,
        seed=args.seed,
        group_column=args.group_column,
        template_column=args.template_column,
        flag_threshold=args.flag_threshold,
        block_threshold=args.block_threshold,
        min_samples=args.min_group_size,
    )
    if args.scores_out:
        evaluation.write_scores(args.scores_out)
    print(_dumps(evaluation.report) if args.json else evaluation.summary())
    return 0


def _evaluate_classifier(args: argparse.Namespace, stored: Any) -> int:
    from fairgate.models.classifier import evaluate_model_directory
    from fairgate.models.datasets import load_labelled_data
    from fairgate.models.export import read_manifest

    labels = list(read_manifest(stored.path)["labels"])
    data = load_labelled_data(
        args.data,
        text_column=args.text_column or "text",
        label_column=args.label_column or "label",
        group_column=args.group_column,
        labels=labels,
        max_samples=args.max_samples,
        seed=args.seed,
    )
    report, probs = evaluate_model_directory(
        stored.path, data, variant=args.variant,
        positive_label=args.positive_label, min_group_size=args.min_group_size,
    )
    report = {"model": stored.tag, "variant": args.variant, "data": data.source,
              "data_fingerprint": data.fingerprint, **report}
    if args.scores_out:
        _write_scores(args.scores_out, data, probs, labels)
        report["scores_out"] = args.scores_out
    if args.json:
        print(_dumps(report))
        return 0
    print(f"{stored.tag} ({args.variant}) on {data.source}: {report['n']} texts")
    print(f"  accuracy {_fmt(report['accuracy'])}, macro-F1 {_fmt(report['macro_f1'])}, "
          f"ROC AUC {_fmt(report['roc_auc'])}")
    per_group = report.get("per_group")
    if per_group:
        for group, row in per_group["groups"].items():
            rates = ", ".join(f"{l} {_fmt(r)}" for l, r in row["selection_rate"].items())
            mark = " (insufficient samples)" if row["insufficient_samples"] else ""
            print(f"  {group}: n {row['count']}, accuracy {_fmt(row['accuracy'])}, rates {rates}, "
                  f"FPR {_fmt(row['fpr'])}, FNR {_fmt(row['fnr'])}{mark}")
        for label, figures in per_group["parity"].items():
            print(f"  label {label!r}: parity difference {_fmt(figures['difference'])}, impact ratio "
                  f"{_fmt(figures['ratio'])} (lowest {figures['lowest_group']}, highest {figures['highest_group']})")
    return 0


def _write_scores(path: str, data: Any, probs: Any, labels: list[str]) -> None:
    """One CSV row per input: row, true label, predicted label, group, one score per label.

    No text: the scores file may be shared where the data may not.
    """
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "label", "predicted", "group", *[f"score_{l}" for l in labels]])
        for i in range(len(data)):
            writer.writerow([
                i,
                labels[int(data.targets[i])],
                labels[int(probs[i].argmax())],
                data.groups[i] if data.groups is not None else "",
                *[f"{float(p):.6f}" for p in probs[i]],
            ])


def _handle_models(args: argparse.Namespace) -> int:
    from fairgate.models.store import list_stored_models

    models = list_stored_models()
    rows = []
    for m in models:
        metrics = m.metadata.get("metrics", {}) or {}
        rows.append({
            "tag": m.tag,
            "role": m.metadata.get("role", m.labels.get("role")),
            "task": m.metadata.get("task"),
            "labels": m.metadata.get("labels"),
            "base": m.metadata.get("base"),
            "created": m.created,
            "accuracy": metrics.get("accuracy"),
            "macro_f1": metrics.get("macro_f1"),
            "roc_auc": metrics.get("roc_auc"),
            "data_fingerprint": (m.metadata.get("data") or {}).get("fingerprint")
            if isinstance(m.metadata.get("data"), dict) else None,
            "path": str(m.path),
        })
    if args.json:
        print(_dumps(rows))
        return 0
    if not rows:
        print("no fairgate models in the BentoML store; build one with `fairgate build classifier`")
        return 0
    for r in rows:
        labels = ",".join(r["labels"] or [])
        print(f"{r['tag']}  {r['role'] or '?'}  created {r['created']}  labels [{labels}]")
        print(f"    accuracy {_fmt(r['accuracy'])}  macro-F1 {_fmt(r['macro_f1'])}  "
              f"ROC AUC {_fmt(r['roc_auc'])}  base {r['base'] or 'n/a'}")
    return 0
