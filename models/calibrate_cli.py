"""``fairgate calibrate``: guard thresholds with a stated false-block guarantee.

Registered into the one ``fairgate`` parser by ``fairgate.service.cli``. Scores the user's
benign (and optionally toxic) texts with a guard from the BentoML store, calibrates a flag
and a block threshold per category (:mod:`fairgate.models.calibrate`), prints a table or
JSON, and with ``--out`` writes a validated policy. ``--simulate`` checks the promise on
synthetic score distributions instead (:mod:`fairgate.guardrails.calibration_simulate`),
because a statistical claim comes with the simulation that checks it.

Exit codes: 0 ok, 1 bad input (missing file or model, no texts, no text column, too few
texts for the guarantee, invalid policy), 2 usage, 3 the simulation found the promise broken.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

from fairgate.guardrails.contracts import TOXICITY_CATEGORIES
from fairgate.models.store import json_safe

__all__ = ["EXIT_BROKEN", "EXIT_ERROR", "EXIT_USAGE", "register"]

logger = logging.getLogger(__name__)

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BROKEN = 3


def register(subparsers: argparse._SubParsersAction, build_subparsers: argparse._SubParsersAction) -> None:
    """Add ``calibrate`` to the fairgate parser."""
    del build_subparsers  # nothing to build
    p = subparsers.add_parser(
        "calibrate",
        help="pick guard thresholds with a stated false-block guarantee on your benign texts",
        description="Score benign texts like your traffic with a stored guard and pick, per category, "
        "the lowest flag and block thresholds such that, with the given confidence, the false-block "
        "(false-flag) rate on such texts is at most the target (a distribution-free order-statistic "
        "bound). With --toxic, also report recall. With --simulate, check the guarantee on synthetic "
        "score distributions instead (no model, no data).",
    )
    p.add_argument("--model", default=None, help="guard in the store, e.g. fairgate-toxicity or NAME:VERSION")
    p.add_argument("--benign", default=None, help="benign texts: .txt (one per line), .csv or .tsv")
    p.add_argument("--toxic", default=None, help="toxic texts, same formats: recall at the thresholds")
    p.add_argument("--text-column", default="text", help="text column of a CSV/TSV (default: text)")
    p.add_argument("--max-false-block", type=float, default=0.01, help="target false-block rate (default 0.01)")
    p.add_argument(
        "--max-false-flag", type=float, default=0.05,
        help="target rate of benign texts flagged or blocked (default 0.05)",
    )
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the guarantee (default 0.95)")
    p.add_argument(
        "--categories", default=",".join(TOXICITY_CATEGORIES),
        help="comma-separated categories to calibrate (default: all six)",
    )
    p.add_argument(
        "--joint", action=argparse.BooleanOptionalAction, default=True,
        help="hold the whole guard ('any category blocks') to the targets by splitting them over the "
        "categories (Bonferroni; default on). --no-joint holds each category on its own",
    )
    p.add_argument("--variant", choices=["int8", "fp32"], default="int8", help="ONNX variant (default int8, "
                   "what serving runs)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--policy", default=None, help="policy to start --out from (default: the bundled default)")
    p.add_argument("--out", default=None, help="write the calibrated policy YAML here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    sim = p.add_argument_group("simulation (--simulate)")
    sim.add_argument(
        "--simulate", action="store_true",
        help="check the guarantee on synthetic benign scores with known false-positive rates",
    )
    sim.add_argument(
        "--distribution", default="all",
        help="logit-normal, heavy-tail, beta-like, tied, or all (default: all)",
    )
    sim.add_argument(
        "--n", default=None,
        help="calibration sizes, comma-separated (default: the smallest multiple of 1000 the targets allow)",
    )
    sim.add_argument("--seeds", type=int, default=500, help="repetitions per row (default 500)")
    sim.add_argument("--seed", type=int, default=0, help="first random seed (default 0)")
    p.set_defaults(handler=_run)


def _error(message: str) -> None:
    print(f"fairgate calibrate: error: {message}", file=sys.stderr)


def _categories(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    return list(dict.fromkeys(names))


def _run(args: argparse.Namespace) -> int:
    from fairgate.guardrails.calibration import CalibrationError
    from fairgate.guardrails.policy import PolicyError
    from fairgate.models.errors import FairgateModelError

    try:
        if args.simulate:
            return _simulate(args)
        if not args.model or not args.benign:
            _error("--model and --benign are required (or pass --simulate); e.g. "
                   "fairgate calibrate --model fairgate-toxicity --benign traffic.csv")
            return EXIT_USAGE
        return _calibrate(args)
    except (CalibrationError, FairgateModelError, PolicyError) as error:
        _error(str(error))
        return EXIT_ERROR


def _store_scorer(tag: str, *, variant: str, batch_size: int) -> tuple[str, Any]:
    """The stored guard's tag and a function texts -> ``[n, 6]`` scores (its int8 ONNX by default)."""
    from fairgate.guardrails.onnx_model import ModelDirectoryError, OnnxTextModel
    from fairgate.models.errors import StoreError
    from fairgate.models.guard.evaluation import score_texts
    from fairgate.models.store import get_stored_model

    stored = get_stored_model(tag)
    try:
        model = OnnxTextModel.from_directory(stored.path, variant=variant)  # type: ignore[arg-type]
    except ModelDirectoryError as error:
        raise StoreError(f"{stored.tag}: {error}") from error

    def score(texts: Sequence[str]) -> Any:
        return score_texts(model, texts, batch_size=batch_size)

    return stored.tag, score


def _calibrate(args: argparse.Namespace) -> int:
    from fairgate.models.calibrate import calibrate_guard, calibrated_policy_text, read_texts, texts_fingerprint

    benign = read_texts(args.benign, text_column=args.text_column, option="--benign")
    toxic = read_texts(args.toxic, text_column=args.text_column, option="--toxic") if args.toxic else None
    tag, score = _store_scorer(args.model, variant=args.variant, batch_size=args.batch_size)
    started = time.perf_counter()
    logger.info("scoring %d benign%s texts with %s (%s)", len(benign),
                f" and {len(toxic)} toxic" if toxic else "", tag, args.variant)
    benign_scores = score(benign)
    toxic_scores = score(toxic) if toxic else None
    logger.info("scored in %.1fs", time.perf_counter() - started)
    calibration = calibrate_guard(
        benign_scores,
        categories=_categories(args.categories),
        max_false_block=args.max_false_block,
        max_false_flag=args.max_false_flag,
        confidence=args.confidence,
        joint=args.joint,
        toxic_scores=toxic_scores,
    )
    data: dict[str, Any] = {
        "model": f"{tag} ({args.variant})",
        "benign": f"{args.benign}, n={len(benign)}, {texts_fingerprint(benign)}",
    }
    if toxic:
        data["toxic"] = f"{args.toxic}, n={len(toxic)}, {texts_fingerprint(toxic)}"
    report: dict[str, Any] = {
        "model": tag,
        "variant": args.variant,
        "benign": {"path": args.benign, "n": len(benign), "fingerprint": texts_fingerprint(benign)},
        "toxic": {"path": args.toxic, "n": len(toxic), "fingerprint": texts_fingerprint(toxic)} if toxic else None,
        **calibration.as_dict(),
        "policy_out": None,
    }
    untouched: list[str] = []
    if args.out:
        from pathlib import Path

        text, policy = calibrated_policy_text(calibration, provenance=data, base=args.policy)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        scratch = out.with_name(out.name + ".tmp")
        scratch.write_text(text, encoding="utf-8")
        scratch.replace(out)
        report["policy_out"] = str(out)
        untouched = [name for name in policy.toxicity.categories if name not in calibration.categories]
        report["uncalibrated_categories"] = untouched
    if args.json:
        print(json.dumps(json_safe(report), indent=2))
        return 0
    _print_calibration(calibration, report, untouched)
    return 0


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2%}"


def _print_calibration(calibration: Any, report: dict[str, Any], untouched: list[str]) -> None:
    c = calibration
    print(f"{report['model']} ({report['variant']}) on {report['benign']['path']}: n={c.n_benign} benign"
          + (f", {c.n_toxic} toxic" if c.n_toxic else "") + " texts")
    headers = ["category", "action", "target", "threshold", "k", "flagged/n", "empirical", "upper bound", "recall"]
    rows = []
    for name, result in c.categories.items():
        for action, t, recall in (("flag", result.flag, result.recall_flag), ("block", result.block, result.recall_block)):
            rows.append([name, action, f"{t.max_rate:.3g}", f"{t.threshold:.6f}", str(t.k),
                         f"{t.flagged}/{t.n}", _pct(t.empirical_rate), _pct(t.rate_upper_bound), _pct(recall)])
    _table(f"thresholds at {c.category_confidence:.4g} confidence per category", headers, rows)
    print(f"any category: benign flagged {_pct(c.any_false_flag)}, blocked {_pct(c.any_false_block)}"
          + (f"; toxic recall flag {_pct(c.any_recall_flag)}, block {_pct(c.any_recall_block)}" if c.n_toxic else ""))
    print(c.guarantee())
    print("How to read: 'upper bound' is the one-sided Clopper-Pearson limit of each row's rate at the "
          "per-category confidence; k is the rank of the benign score the threshold sits just above.")
    if report.get("policy_out"):
        print(f"wrote {report['policy_out']} (validated)")
        if untouched:
            print(f"note: {', '.join(untouched)} keep their old thresholds in the policy and are not covered "
                  "by the guarantee; calibrate them too (--categories) or remove them from the policy")


def _table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    """A rich table when rich is installed, else aligned plain text (the same cells)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        print(title)
        for line in (headers, *rows):
            print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        return
    table = Table(title=title)
    for header in headers:
        table.add_column(header, justify="left" if header in ("category", "action", "distribution") else "right")
    for row in rows:
        table.add_row(*row)
    console = Console(file=sys.stdout)
    if not console.is_terminal:
        console = Console(file=sys.stdout, width=140)
    console.print(table)


def _sizes(text: str | None, *, max_rate: float, confidence: float, categories: int) -> list[int]:
    from fairgate.guardrails.calibration import CalibrationError
    from fairgate.guardrails.calibration_simulate import required_n

    if text is None:
        needed = required_n(max_rate=max_rate, confidence=confidence, categories=categories)
        return [1000 * math.ceil(needed / 1000)]
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CalibrationError(f"--n {text!r} is not a comma-separated list of whole numbers, e.g. 1000,5000") from None
    if not sizes or min(sizes) < 1:
        raise CalibrationError(f"--n {text!r} needs positive sizes, e.g. 1000,5000")
    return sizes


def _simulate(args: argparse.Namespace) -> int:
    from fairgate.guardrails.calibration import CalibrationError
    from fairgate.guardrails.calibration_simulate import DISTRIBUTIONS, required_n, simulate_calibration

    names = list(DISTRIBUTIONS) if args.distribution == "all" else _categories(args.distribution)
    unknown = [d for d in names if d not in DISTRIBUTIONS]
    if unknown:
        raise CalibrationError(f"--distribution {', '.join(unknown)} unknown; use all or some of "
                               f"{', '.join(DISTRIBUTIONS)}")
    if args.seeds < 1:
        raise CalibrationError(f"--seeds {args.seeds} must be at least 1, e.g. 500")
    if args.max_false_flag < args.max_false_block:
        raise CalibrationError(f"--max-false-flag {args.max_false_flag:g} is below --max-false-block "
                               f"{args.max_false_block:g}; set it at least as high")
    parts = len(_categories(args.categories)) if args.joint else 1
    sizes = _sizes(args.n, max_rate=args.max_false_block, confidence=args.confidence, categories=parts)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for name in names:
        for n in sizes:
            for target, rate in (("block", args.max_false_block), ("flag", args.max_false_flag)):
                needed = required_n(max_rate=rate, confidence=args.confidence, categories=parts)
                if n < needed:
                    rows.append({"distribution": name, "n": n, "target": target, "max_rate": rate,
                                 "skipped": f"n below the minimum {needed}"})
                    continue
                result = simulate_calibration(distribution=name, n=n, max_rate=rate, confidence=args.confidence,
                                              seeds=args.seeds, seed=args.seed, categories=parts)
                rows.append({"target": target, **vars(result), "holds": result.holds})
    seconds = time.perf_counter() - started
    broken = [r for r in rows if "holds" in r and not r["holds"]]
    if args.json:
        print(json.dumps(json_safe({"confidence": args.confidence, "categories": parts, "seeds": args.seeds,
                                     "seconds": round(seconds, 2), "rows": rows}), indent=2))
    else:
        _print_simulation(rows, args, parts, seconds)
    return EXIT_BROKEN if broken else 0


def _print_simulation(rows: list[dict[str, Any]], args: argparse.Namespace, parts: int, seconds: float) -> None:
    headers = ["distribution", "n", "target", "max rate", "seeds", "true rate <= target", "proven >=",
               "mean true rate", "max true rate", "p-value", "verdict"]
    cells = []
    for r in rows:
        if "skipped" in r:
            cells.append([r["distribution"], str(r["n"]), r["target"], f"{r['max_rate']:g}", "-", "-", "-", "-", "-",
                          "-", r["skipped"]])
            continue
        cells.append([r["distribution"], str(r["n"]), r["target"], f"{r['max_rate']:g}", str(r["seeds"]),
                      f"{r['coverage']:.1%}", f"{1 - r['failure_bound']:.1%}", f"{r['true_rate_mean']:.4f}",
                      f"{r['true_rate_max']:.4f}", f"{r['p_value']:.3f}", "holds" if r["holds"] else "BROKEN"])
    scope = f"any of {parts} independent categories" if parts > 1 else "one category"
    _table(f"calibration guarantee in simulation ({scope}, confidence {args.confidence:g})", headers, cells)
    print(f"{args.seeds} seeds per row from seed {args.seed}, {seconds:.1f}s. 'true rate <= target' should be at "
          f"least the confidence up to seed noise; 'proven >=' is the bound (exact for continuous scores, one "
          "category); a p-value below 0.001 means the promise is broken, not unlucky.")
