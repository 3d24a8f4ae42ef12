"""``python -m loadtests.probe_report``: what the live counterfactual probe reports, through the service.

Issue 13's figure: the mean gap and flip rate over the SST-2 dev sentences
(``../shared/data/sst2/dev.tsv``, when present) and the bundled identity sentences
(``models/data/identity_eval/identity_eval.csv``), sent through a real server. For each
text set, a fresh ``bentoml serve`` (one worker, so ``/guardrails/status`` is the whole
picture; a fresh process, so the sets are reported apart) runs a policy that probes every
item: the base policy (``--policy`` or the bundled default) with ``counterfactual:
{enabled: true, sample: 1.0, max_variants_per_batch: 4096}`` and its ``kinds``. The set is
sent in ``/classify_batch`` requests, then the counterfactual section of
``/guardrails/status`` is read (per kind: items probed, skipped by the row bound, per model
the variants, mean and largest gap, flips and flip rate, the groups most often
unfavoured), with the flips per swapped-in group from ``/metrics``.

    BENTOML_HOME=/work/bentoml-after .venv/bin/python -m loadtests.probe_report [--limit N] [--out report.json]

In-process figures without HTTP: ``python -m loadtests.probe_cost --figures``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests._policy_compare import write_policy
from loadtests._texts import REPO_ROOT, SST2_DEV, read_column

IDENTITY_EVAL = REPO_ROOT / "models" / "data" / "identity_eval" / "identity_eval.csv"
FLIPS_METRIC = "fairgate_counterfactual_flips_total"

logger = logging.getLogger("loadtests.probe_report")


def text_sets(limit: int | None) -> dict[str, list[str]]:
    """The sets, in file order (the first ``limit`` of each when given)."""
    sets: dict[str, list[str]] = {}
    if SST2_DEV.exists():
        sets["sst2_dev"] = read_column(SST2_DEV, "sentence", delimiter="\t")
    else:
        logger.warning("%s is missing: the SST-2 set is left out", SST2_DEV)
    with IDENTITY_EVAL.open(newline="", encoding="utf-8") as handle:
        sets["identity"] = [row["text"] for row in csv.DictReader(handle) if row.get("text")]
    return {name: texts[:limit] if limit else texts for name, texts in sets.items()}


def flips_by_group(metrics_text: str) -> dict[str, dict[str, dict[str, float]]]:
    """``{kind: {model: {swapped-in group: flips}}}`` from a Prometheus text page."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, dict[str, float]]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name != FLIPS_METRIC:
                continue
            labels = sample.labels
            models = out.setdefault(labels.get("kind", "?"), {})
            groups = models.setdefault(labels.get("model", "?"), {})
            groups[labels.get("group", "?")] = groups.get(labels.get("group", "?"), 0.0) + sample.value
    return out


def summarize_probe(probe: dict[str, Any], flips: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """The status' counterfactual section, per kind and model, plus totals per model over the kinds."""
    kinds = []
    totals: dict[str, dict[str, float]] = {}
    for kind in probe.get("kinds") or []:
        if not kind.get("items") and not kind.get("skipped"):
            continue
        models = []
        for model in kind.get("models") or []:
            name = model["model"]
            total = totals.setdefault(name, {"probes": 0, "variants": 0, "gap_sum": 0.0, "flips": 0})
            total["probes"] += model["probes"]
            total["variants"] += model["variants"]
            total["gap_sum"] += (model["mean_gap"] or 0.0) * model["probes"]
            total["flips"] += model["flips"]
            top = sorted((flips.get(kind["kind"], {}).get(name) or {}).items(), key=lambda kv: -kv[1])
            models.append({**model, "flips_by_swapped_in_group": {g: int(c) for g, c in top if c}})
        kinds.append(
            {
                "kind": kind["kind"],
                "items": kind["items"],
                "skipped": kind["skipped"],
                "models": models,
                "unfavoured": kind.get("unfavoured") or [],
            }
        )
    overall = {
        name: {
            "probes": int(t["probes"]),
            "variants": int(t["variants"]),
            "mean_gap": round(t["gap_sum"] / t["probes"], 4) if t["probes"] else None,
            "flips": int(t["flips"]),
            "flip_rate": round(t["flips"] / t["variants"], 4) if t["variants"] else None,
        }
        for name, t in totals.items()
    }
    return {
        "sampled": probe.get("sampled"),
        "errors": probe.get("errors"),
        "kinds": kinds,
        "overall_per_model": overall,
    }


def _batches(texts: Sequence[str], size: int) -> list[list[dict[str, str]]]:
    return [[{"text": t} for t in texts[i : i + size]] for i in range(0, len(texts), size)]


def run_set(name: str, texts: Sequence[str], policy: Path, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    import httpx

    from loadtests._server import BentoServer

    env = {
        "FAIRGATE_POLICY": str(policy),
        "FAIRGATE_WORKERS": "1",  # the status is per worker: one worker sees every item
        # Probe inline, before each answer: every item is probed, which the background
        # probe's bounded queue would not keep up with (it drops batches instead).
        "FAIRGATE_PROBE_QUEUE_BATCHES": "0",
        # Every item probed makes a batch several times dearer; a request past the service's
        # timeout gets 503 while its batch (and the probe) still runs, so a retry would count twice.
        "FAIRGATE_REQUEST_TIMEOUT_S": str(args.request_timeout),
        "BENTOML_DO_NOT_TRACK": "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    actions: dict[str, int] = {}
    started = time.monotonic()
    with (
        BentoServer(env=env, log_path=log_dir / f"{name}.log", start_timeout_s=args.start_timeout) as server,
        httpx.Client(base_url=server.url, timeout=args.request_timeout + 30) as client,
    ):
        for batch in _batches(texts, args.batch):
            response = client.post("/classify_batch", json={"items": batch})
            response.raise_for_status()
            body = response.json()
            results = body if isinstance(body, list) else body.get("results", [])
            if len(results) != len(batch):
                raise RuntimeError(f"{name}: {len(batch)} items sent, {len(results)} results: {str(body)[:300]}")
            for result in results:
                actions[result["action"]] = actions.get(result["action"], 0) + 1
        status = client.get("/guardrails/status").json()
        metrics = client.get("/metrics").text
    probe = (status.get("guardrails") or {}).get("counterfactual")
    if not probe:
        raise RuntimeError(f"{name}: /guardrails/status has no counterfactual section: {str(status)[:300]}")
    return {
        "texts": len(texts),
        "actions": actions,
        "seconds": round(time.monotonic() - started, 1),
        "policy_version": status.get("policy_version"),
        "models": {m["role"]: m["tag"] for m in status.get("models") or []},
        "probe": {
            "enabled": probe.get("enabled"),
            "sample": probe.get("sample"),
            "max_variants_per_batch": probe.get("max_variants_per_batch"),
        },
        **summarize_probe(probe, flips_by_group(metrics)),
    }


def _fmt(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def format_report(report: dict[str, Any]) -> str:
    lines = []
    for name, figures in report["sets"].items():
        lines.append(
            f"\n== {name}: {figures['texts']} texts, actions {figures['actions']}, sampled {figures['sampled']}, "
            f"probe errors {figures['errors']}, models {figures['models']}"
        )
        lines.append(
            f"{'kind':20} {'items':>5} {'skip':>4} {'model':10} {'variants':>8} {'mean gap':>8} "
            f"{'max gap':>8} {'flips':>5} {'flip rate':>9}  top unfavoured (guard) / flips by swapped-in group"
        )
        for kind in figures["kinds"]:
            unfavoured = ", ".join(f"{g['group']} {g['count']}" for g in kind["unfavoured"][:5]) or "-"
            for index, model in enumerate(kind["models"]):
                flips = ", ".join(f"{g} {c}" for g, c in list(model["flips_by_swapped_in_group"].items())[:4])
                lines.append(
                    f"{kind['kind'] if index == 0 else '':20} {kind['items'] if index == 0 else '':>5} "
                    f"{kind['skipped'] if index == 0 else '':>4} {model['model']:10} {model['variants']:>8} "
                    f"{_fmt(model['mean_gap']):>8} {_fmt(model['max_gap']):>8} {model['flips']:>5} "
                    f"{_fmt(model['flip_rate']):>9}  "
                    + (f"unfavoured: {unfavoured}" if model["model"] == "guard" else f"flips to: {flips or '-'}")
                    + (f"; flips to: {flips}" if model["model"] == "guard" and flips else "")
                )
        for model, total in figures["overall_per_model"].items():
            lines.append(
                f"{'all kinds':20} {'':>5} {'':>4} {model:10} {total['variants']:>8} {_fmt(total['mean_gap']):>8} "
                f"{'':>8} {total['flips']:>5} {_fmt(total['flip_rate']):>9}  ({total['probes']} probes)"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.probe_report", description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, default=None, help="base policy (default: the bundled one)")
    parser.add_argument("--batch", type=int, default=32, help="items per /classify_batch request")
    parser.add_argument("--limit", type=int, default=None, help="first N texts of each set (default: all)")
    parser.add_argument("--sets", default="sst2_dev,identity", help="which sets, comma-separated")
    parser.add_argument(
        "--max-variants", type=int, default=4096, help="counterfactual.max_variants_per_batch (policy bound: 4096)"
    )
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument(
        "--request-timeout", type=float, default=600.0, help="FAIRGATE_REQUEST_TIMEOUT_S of the server (at most 600)"
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="server logs and the policy (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="fairgate-probe-report-"))
    policy = write_policy(
        args.policy,
        log_dir / "probe_every_item.yaml",
        name="probe_every_item",
        counterfactual={"enabled": True, "sample": 1.0, "max_variants_per_batch": args.max_variants},
    )
    wanted = [s.strip() for s in args.sets.split(",") if s.strip()]
    sets = text_sets(args.limit)
    report: dict[str, Any] = {"policy": str(policy), "batch": args.batch, "log_dir": str(log_dir), "sets": {}}
    for name in wanted:
        if name not in sets:
            parser.error(f"--sets: no set {name!r} (available: {', '.join(sets)})")
        logger.info("%s: %d texts through a fresh server", name, len(sets[name]))
        report["sets"][name] = run_set(name, sets[name], policy, args, log_dir)
    print(format_report(report))
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
        print(f"\nwrote {args.out}; server logs in {log_dir}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
