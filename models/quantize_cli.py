"""``fairgate quantize``: remake a stored model's int8 variant (static or dynamic), gate it, store it.

Registered by :func:`fairgate.models.cli.register`. The stored entry is never changed:
the model directory is copied, re-quantised, checked against its own fp32 graph and
stored as a new version of the same name, with the metadata of the old one plus the new
``export.quantization`` (mode, calibration method and fingerprint), ``requantization``
(parity against fp32, batch dependence) and ``requantized_from``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register_quantize"]

EXIT_ERROR = 1
EXIT_PARITY = 4
# The --keep-fp32 word for the fused attention nodes (named Attention_N, not by a suffix).
ATTENTION = "attention"


def register_quantize(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="remake a stored model's int8 variant (static or dynamic) and store it as a new version",
        description="Quantise a stored model's fp32 ONNX graph again: static int8 calibrated on "
        "--calibration-texts (the model's own training texts), or dynamic. The new int8 graph "
        "must agree with fp32 on --parity-texts; it is then stored as a new version.",
    )
    p.add_argument("--model", required=True, help="store tag, e.g. fairgate-toxicity or NAME:VERSION")
    p.add_argument("--mode", choices=["static", "dynamic"], default="static")
    p.add_argument("--calibration-texts", type=Path, default=None,
                   help="CSV/TSV (column --text-column) or one text per line: the model's training texts")
    p.add_argument("--calibration-method", choices=["minmax", "entropy", "percentile"], default="minmax",
                   help="static int8 activation ranges (default: minmax)")
    p.add_argument("--static-format", choices=["integer-ops", "qdq"], default="integer-ops",
                   help="integer-ops (default: the dynamic graph's integer ops with fixed scales) or qdq")
    p.add_argument("--calibration-samples", type=int, default=256, help="seeded sample size (default 256)")
    p.add_argument("--parity-texts", type=Path, required=True,
                   help="held-out texts for the fp32-vs-int8 gate (not the calibration texts)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--int8-min-agreement", type=float, default=0.99)
    p.add_argument("--keep-fp32", default=None,
                   help="comma-separated MatMul name suffixes left in fp32, and/or 'attention' for the "
                   "fused attention nodes, or none; the list replaces the default, the FFN down-projections "
                   "(fairgate.models.static_int8, what guard builds keep; classifier builds try none first), "
                   "so name them too to keep them")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--u8-weights", action="store_true",
                         help="u8 int8 weights on AVX2 (default: the weights the stored model has)")
    weights.add_argument("--signed-weights", action="store_true",
                         help="signed 7-bit int8 weights on AVX2 (default: the weights the stored model has)")
    p.add_argument("--no-store", action="store_true", help="measure and write --output-dir only")
    p.add_argument("--output-dir", type=Path, default=None, help="also copy the model directory here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_handle_quantize)


def _handle_quantize(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from fairgate.models.errors import ExportParityError, FairgateModelError
    from fairgate.models.requantize import read_texts, requantize_directory
    from fairgate.models.static_int8 import KEEP_FP32_SUFFIXES, StaticQuantization
    from fairgate.models.store import get_stored_model, save_model_directory

    try:
        stored = get_stored_model(args.model)
        if args.mode == "static" and args.calibration_texts is None:
            raise FairgateModelError(
                "--mode static needs --calibration-texts FILE (the model's training texts); "
                "or pass --mode dynamic"
            )
        calibration = read_texts(args.calibration_texts, column=args.text_column) if args.calibration_texts else []
        parity_texts = read_texts(args.parity_texts, column=args.text_column)
        kept = None if args.keep_fp32 is None else [s.strip() for s in args.keep_fp32.split(",")]
        static = StaticQuantization(
            method=args.calibration_method,
            quant_format=args.static_format,
            max_texts=args.calibration_samples,
            keep_fp32_suffixes=KEEP_FP32_SUFFIXES
            if kept is None
            else tuple(s for s in kept if s and s not in ("none", ATTENTION)),
            keep_attention_fp32=kept is not None and ATTENTION in kept,
            avx2_signed_weights=_signed_weights(args, stored.metadata),
        )
        with tempfile.TemporaryDirectory(prefix="fairgate-quantize-") as scratch:
            model_dir = Path(scratch) / "model"
            shutil.copytree(stored.path, model_dir, ignore=shutil.ignore_patterns("model.yaml"))
            result = requantize_directory(
                model_dir,
                mode=args.mode,
                calibration_texts=calibration,
                parity_texts=parity_texts,
                static=static,
                min_agreement=args.int8_min_agreement,
            )
            metadata = dict(stored.metadata)
            export = dict(metadata.get("export") or {})
            export["quantization"] = result.quantization
            metadata["export"] = export
            metadata["requantization"] = {**result.parity, "batch_dependence": result.batch_dependence}
            metadata["requantized_from"] = stored.tag
            tag = None
            if not args.no_store:
                name = stored.tag.split(":", 1)[0]
                tag = save_model_directory(name, model_dir, metadata=metadata, labels=stored.labels)
            if args.output_dir is not None:
                shutil.copytree(model_dir, args.output_dir, dirs_exist_ok=True)
    except ExportParityError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PARITY
    except FairgateModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    summary = {
        "tag": tag,
        "from": stored.tag,
        "mode": args.mode,
        "calibration": result.quantization.get("calibration"),
        "parity": result.parity,
        "batch_dependence": result.batch_dependence,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{tag or '(not stored)'}: {args.mode} int8 from {stored.tag}; agreement with fp32 "
            f"{result.parity['int8_label_agreement']:.4f}, max |logit diff| {result.parity['int8_max_abs_diff']:.3g}, "
            f"batch dependence {result.batch_dependence:.3g}"
        )
    return 0


def _signed_weights(args: argparse.Namespace, metadata: dict) -> bool:
    """The flag's choice, else the stored model's own weights: a guard stays on u8 weights
    (its fairness figures were measured on them, fairgate.models.guard._build)."""
    if args.u8_weights or args.signed_weights:
        return bool(args.signed_weights)
    stored = ((metadata.get("export") or {}).get("quantization") or {}).get("weights_dtype")
    return stored != "QUInt8"
