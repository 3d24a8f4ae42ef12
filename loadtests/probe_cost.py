"""``python -m loadtests.probe_cost``: what the live counterfactual probe costs, and what it reports.

In this process, on the real ONNX models (no HTTP, no BentoML server), the service's own
batch path (:class:`fairgate.service._pipeline.GuardedClassifier`) classifies the same
batches with the probe off and on (``--sample``, default the policy's 0.05), in
alternating rounds so both see the same machine, and reports texts/s of each and the
ratio (the issue's target: the probe on keeps at least 90% of the throughput). Then, with
``--figures``, it sends each text set once with every item probed (sample 1.0) and reports
the probe's status per kind: items probed, mean gap, flips and flip rate per model.

Text sets: the SST-2 dev sentences (``../shared/data/sst2/dev.tsv``, when present) and the
bundled identity sentences (``models/data/identity_eval``, benign and toxic). ``--limit``
keeps the first N of each, so a run stays short on a busy machine; the saturation
benchmark of the whole server is ``make bench`` with a policy that turns the probe off
(``--policy``) against the default one.

    .venv/bin/python -m loadtests.probe_cost --guard DIR --classifier DIR --limit 400 --figures

``--guard``/``--classifier`` are model directories; unset, the BentoML store's
``fairgate-toxicity`` and ``fairgate-classifier`` (``BENTOML_HOME``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests._texts import REPO_ROOT, SST2_DEV, read_column

IDENTITY_EVAL = REPO_ROOT / "models" / "data" / "identity_eval" / "identity_eval.csv"

logger = logging.getLogger("loadtests.probe_cost")


@dataclass(frozen=True)
class Item:
    text: str
    group: str | None = None


def _model_path(given: str | None, tag: str) -> str:
    if given:
        return given
    import bentoml

    return str(bentoml.models.get(tag).path)


def _texts(limit: int) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {}
    if SST2_DEV.exists():
        sets["sst2_dev"] = read_column(SST2_DEV, "sentence", delimiter="\t")[:limit]
    with IDENTITY_EVAL.open(newline="", encoding="utf-8") as handle:
        sets["identity"] = [row["text"] for row in csv.DictReader(handle)][:limit]
    return sets


def _pipeline(models: tuple[Any, Any], *, counterfactual: dict[str, Any], seed: int) -> Any:
    from prometheus_client import CollectorRegistry

    from fairgate.guardrails import Guard, OnnxToxicityScorer, Policy
    from fairgate.service._pipeline import GuardedClassifier

    classifier, guard_model = models
    data = Policy.default().model_dump()
    data["counterfactual"].update(counterfactual)
    policy = Policy.from_mapping(data)
    scorer = OnnxToxicityScorer(model=guard_model)
    guard = Guard(policy=policy, scorer=scorer, registry=CollectorRegistry(), rng=random.Random(seed))
    return GuardedClassifier(classifier=classifier, guard=guard, guard_model=guard_model, explain_scorer=scorer)


def _run(pipeline: Any, texts: Sequence[str], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        pipeline.classify([Item(t) for t in texts[start : start + batch]])
    return time.perf_counter() - started


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from fairgate.guardrails.onnx_model import OnnxTextModel

    models = (
        OnnxTextModel.from_directory(
            _model_path(args.classifier, "fairgate-classifier"), variant=args.variant, intra_op_threads=args.threads
        ),
        OnnxTextModel.from_directory(
            _model_path(args.guard, "fairgate-toxicity"), variant=args.variant, intra_op_threads=args.threads
        ),
    )
    sets = _texts(args.limit)
    mixed = [t for texts in sets.values() for t in texts]
    random.Random(0).shuffle(mixed)
    report: dict[str, Any] = {
        "variant": args.variant,
        "threads": args.threads,
        "batch": args.batch,
        "texts": {name: len(texts) for name, texts in sets.items()},
        "sample": args.sample,
    }
    off = _pipeline(models, counterfactual={"enabled": False}, seed=1)
    on = _pipeline(models, counterfactual={"sample": args.sample}, seed=1)
    _run(off, mixed[: args.batch * 2], args.batch)  # warm the sessions
    seconds = {"off": 0.0, "on": 0.0}
    for _ in range(args.rounds):
        seconds["off"] += _run(off, mixed, args.batch)
        seconds["on"] += _run(on, mixed, args.batch)
    done = len(mixed) * args.rounds
    report["throughput"] = {
        "texts_per_s_probe_off": done / seconds["off"],
        "texts_per_s_probe_on": done / seconds["on"],
        "ratio_on_over_off": seconds["off"] / seconds["on"],
        "rounds": args.rounds,
    }
    status = on.status().counterfactual
    report["throughput"]["probed_items"] = sum(k.items for k in status.kinds) if status else 0
    if args.figures:
        figures = {}
        for name, texts in sets.items():
            # Every item, and no probe left out by the row bound: the figures of the whole set.
            everyone = _pipeline(models, counterfactual={"sample": 1.0, "max_variants_per_batch": 4096}, seed=1)
            _run(everyone, texts, args.batch)
            probe = everyone.status().counterfactual
            figures[name] = [
                {
                    "kind": k.kind,
                    "items": k.items,
                    "skipped": k.skipped,
                    "models": [m.model_dump() for m in k.models],
                    "unfavoured": [g.model_dump() for g in k.unfavoured],
                }
                for k in (probe.kinds if probe else [])
                if k.items
            ]
        report["figures"] = figures
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.probe_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--guard", help="guard model directory (default: the store's fairgate-toxicity)")
    parser.add_argument("--classifier", help="classifier model directory (default: the store's fairgate-classifier)")
    parser.add_argument("--variant", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per ONNX session")
    parser.add_argument("--batch", type=int, default=16, help="items per batch")
    parser.add_argument("--limit", type=int, default=400, help="first N texts of each set")
    parser.add_argument("--rounds", type=int, default=2, help="alternating off/on rounds")
    parser.add_argument("--sample", type=float, default=0.05, help="counterfactual.sample of the 'on' run")
    parser.add_argument("--figures", action="store_true", help="also probe every item of each set once")
    parser.add_argument("--output", type=Path, help="write the JSON report here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = measure(args)
    text = json.dumps(report, indent=2)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
