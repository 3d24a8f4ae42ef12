"""``python -m loadtests.domain_report``: what the live domain-shift monitor says, through the service.

Issue 16's figure: the domain monitor on the served classifier, fed three kinds of text
through a real server, one fresh ``bentoml serve`` (one worker, so ``/guardrails/status``
is the whole picture; a fresh process, so every set starts with an empty window) per set:

- ``reviews_test``: the classifier's own held-out test reviews. The build's split is
  reconstructed from the stored model's metadata (``build_config``, the fine-tuning seed)
  with the build's own functions (:func:`load_labelled_data`, :func:`split_data`) and
  checked against the stored test fingerprint. No alert is expected.
- ``reviews_heldout``: validation and test reviews together (both held out from training;
  the validation split also calibrated the threshold), so the window reaches the policy's
  ``min_samples`` and is tested at least once. No alert is expected.
- ``sst2_dev``: the SST-2 development sentences (movie reviews, a nearby domain), from
  ``../shared/data/sst2/dev.tsv``.
- ``davidson``: a seeded sample of tweets from ``../shared/data/davidson_labeled_data.csv``
  (a far domain; the guard blocks some, and blocked items get no domain score).

Each set goes in ``/classify_batch`` requests of ``--batch`` items; after every request
``/guardrails/status`` is read, so the alert's position is known to the batch: "items
until the alert" counts the items sent up to and including the request after which the
status first showed it (the monitor checks every ``window / checks_per_window`` scored
items, from ``min_samples`` on). Per set: items sent and scored, the share of scored items
with ``domain_score > 1`` (above the build's quantile of in-domain validation scores) from
the responses, the status's own window figures and the ``fairgate_domain_*`` metrics.

    BENTOML_HOME=/work/exp/ms_home .venv/bin/python -m loadtests.domain_report [--out report.json]

Sets missing their data file (``../shared`` absent) are skipped with a message.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loadtests._texts import REPO_ROOT, SST2_DEV, read_column

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DAVIDSON = SHARED_DATA / "davidson_labeled_data.csv"
DEFAULT_SETS = ("reviews_test", "reviews_heldout", "sst2_dev", "davidson")
CLASSIFIER_NAME = "fairgate-classifier"

logger = logging.getLogger("loadtests.domain_report")


# --- the text sets ---------------------------------------------------------------------------


def read_model_metadata(store: Path, tag: str = f"{CLASSIFIER_NAME}:latest") -> tuple[str, dict[str, Any]]:
    """(``name:version``, metadata) of a model in a BentoML store directory, read from its model.yaml."""
    import yaml

    name, _, version = tag.partition(":")
    if not version or version == "latest":
        latest = store / name / "latest"
        if not latest.is_file():
            raise FileNotFoundError(f"{latest} is missing: build the classifier first (`make models`)")
        version = latest.read_text(encoding="utf-8").strip()
    info = yaml.safe_load((store / name / version / "model.yaml").read_text(encoding="utf-8")) or {}
    return f"{name}:{version}", dict(info.get("metadata") or {})


def reconstruct_splits(metadata: Mapping[str, Any], *, bundled: Path | None = None) -> dict[str, Any]:
    """The build's validation and test texts, split again as the build did.

    ``bundled`` replaces the source ``bundled`` (e.g. the reviews of the clone that built
    the model). Returns ``validation``, ``test`` (raw texts), the source and whether the test
    split's fingerprint matches the one the build stored.
    """
    from fairgate.models.datasets import load_labelled_data, split_data

    config = dict(metadata.get("build_config") or {})
    seed = int(((metadata.get("training") or {}).get("config") or {}).get("seed", 0))
    source: str | Path = config.get("data", "bundled")
    if source == "bundled" and bundled is not None:
        source = bundled
    data = load_labelled_data(
        source,
        text_column=config.get("text_column", "text"),
        label_column=config.get("label_column", "label"),
        group_column=config.get("group_column"),
        labels=config.get("labels"),
        max_samples=config.get("max_samples"),
        seed=seed,
        hub_split=config.get("hub_split", "train"),
    )
    test_data = config.get("test_data")
    parts = split_data(
        data,
        seed=seed,
        validation_fraction=float(config.get("validation_fraction", 0.1)),
        test_fraction=0.0 if test_data else float(config.get("test_fraction", 0.1)),
    )
    test = parts.test
    if test_data:
        test = load_labelled_data(
            test_data,
            text_column=config.get("text_column", "text"),
            label_column=config.get("label_column", "label"),
            group_column=config.get("group_column"),
            labels=list(data.labels),
        )
    stored = (metadata.get("data") or {}).get("test_fingerprint")
    return {
        "source": str(source),
        "seed": seed,
        "validation": list(parts.validation.texts),
        "test": list(test.texts),
        "test_fingerprint_matches": stored == test.fingerprint if stored else None,
    }


def read_davidson(path: Path, *, sample: int, seed: int) -> list[str]:
    """A seeded sample of ``sample`` tweets (all when fewer), in the sample's random order."""
    with path.open(newline="", encoding="utf-8") as handle:
        tweets = [row["tweet"].strip() for row in csv.DictReader(handle) if (row.get("tweet") or "").strip()]
    if sample >= len(tweets):
        return tweets
    return [tweets[i] for i in random.Random(seed).sample(range(len(tweets)), sample)]


def text_sets(args: argparse.Namespace, store: Path) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The wanted sets that have their data, and what was reconstructed or skipped."""
    wanted = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in DEFAULT_SETS]
    if unknown:
        raise SystemExit(f"--sets: unknown set(s) {unknown} (available: {', '.join(DEFAULT_SETS)})")
    sets: dict[str, list[str]] = {}
    info: dict[str, Any] = {"skipped": {}}
    if {"reviews_test", "reviews_heldout"} & set(wanted):
        tag, metadata = read_model_metadata(store, args.classifier_tag)
        splits = reconstruct_splits(metadata, bundled=args.reviews)
        info["split"] = {
            "model": tag,
            "source": splits["source"],
            "seed": splits["seed"],
            "validation": len(splits["validation"]),
            "test": len(splits["test"]),
            "test_fingerprint_matches": splits["test_fingerprint_matches"],
        }
        if splits["test_fingerprint_matches"] is False:
            logger.warning(
                "the reconstructed test split of %s does not match the fingerprint the build stored: "
                "the data changed since the build (pass --reviews with the file the build read)",
                tag,
            )
        if "reviews_test" in wanted:
            sets["reviews_test"] = splits["test"]
        if "reviews_heldout" in wanted:
            sets["reviews_heldout"] = splits["validation"] + splits["test"]
    if "sst2_dev" in wanted:
        if args.sst2.is_file():
            sets["sst2_dev"] = read_column(args.sst2, "sentence", delimiter="\t")
        else:
            info["skipped"]["sst2_dev"] = f"{args.sst2} is missing"
    if "davidson" in wanted:
        if args.davidson.is_file():
            sets["davidson"] = read_davidson(args.davidson, sample=args.davidson_sample, seed=args.seed)
        else:
            info["skipped"]["davidson"] = f"{args.davidson} is missing"
    for name, why in info["skipped"].items():
        logger.warning("%s: %s; the set is skipped", name, why)
    ordered = {name: sets[name][: args.limit] if args.limit else sets[name] for name in wanted if name in sets}
    return ordered, info


# --- reading the service's answers (pure) ----------------------------------------------------


def domain_status(status: Mapping[str, Any]) -> dict[str, Any]:
    """The ``domain`` section of a ``/guardrails/status`` body; raises when it is absent."""
    domain = (status.get("guardrails") or {}).get("domain")
    if isinstance(domain, dict):
        return domain
    raise ValueError(f"/guardrails/status has no guardrails.domain section: {str(status)[:300]}")


def share_above(scores: Sequence[float | None], line: float = 1.0) -> dict[str, Any]:
    """Of the scored items (``None``/NaN: not scored), how many and which share score above ``line``."""
    scored = [float(s) for s in scores if s is not None and not math.isnan(float(s))]
    above = sum(1 for s in scored if s > line)
    ordered = sorted(scored)
    return {
        "scored": len(scored),
        "above": above,
        "share": round(above / len(scored), 4) if scored else None,
        "median_score": round(ordered[len(ordered) // 2], 4) if ordered else None,
    }


def first_alert(trace: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The first trace entry (one per request, in order) whose status shows an alert raised.

    An entry holds ``sent`` (items sent so far), ``scored`` (responses with a domain score
    so far) and the domain status after the request (``alert``, ``alerts_raised``, ``n``,
    ``share``, ``share_lower``). Returns ``{request, items, scored, n, share, share_lower}``
    or None when no status showed one.
    """
    for index, entry in enumerate(trace):
        if entry.get("alert") or int(entry.get("alerts_raised") or 0) > 0:
            return {
                "request": index + 1,
                "items": entry["sent"],
                "scored": entry["scored"],
                "n": entry.get("n"),
                "share": entry.get("share"),
                "share_lower": entry.get("share_lower"),
            }
    return None


def domain_metrics(metrics_text: str) -> dict[str, float]:
    """The ``fairgate_domain_*`` gauges and the score histogram's count above 1, from a metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    count = at_one = None
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "fairgate_domain_score_count":
                count = (count or 0.0) + sample.value
            elif sample.name == "fairgate_domain_score_bucket" and float(sample.labels.get("le", "nan")) == 1.0:
                at_one = (at_one or 0.0) + sample.value
            elif sample.name in (
                "fairgate_domain_alert_active",
                "fairgate_domain_out_of_domain_share",
                "fairgate_domain_expected_share",
            ):
                out[sample.name] = sample.value
    if count is not None:
        out["fairgate_domain_score_count"] = count
        if at_one is not None:
            out["scores_above_1"] = count - at_one
    return out


def _scores_of(body: Any, expected: int, name: str) -> tuple[list[float | None], list[str]]:
    results = body if isinstance(body, list) else (body or {}).get("results", [])
    if len(results) != expected:
        raise RuntimeError(f"{name}: {expected} items sent, {len(results)} results: {str(body)[:300]}")
    return [r.get("domain_score") for r in results], [r.get("action", "?") for r in results]


# --- one set through one server --------------------------------------------------------------


def run_set(name: str, texts: Sequence[str], args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    import httpx

    from loadtests._server import BentoServer

    env = {
        "FAIRGATE_WORKERS": "1",  # the status is per worker: one worker sees every item
        "BENTOML_DO_NOT_TRACK": "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1"),  # as `fairgate serve` sets it
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    if args.policy is not None:
        env["FAIRGATE_POLICY"] = str(args.policy)
    if args.classifier_tag != f"{CLASSIFIER_NAME}:latest":
        env["FAIRGATE_CLASSIFIER_TAG"] = args.classifier_tag
    scores: list[float | None] = []
    actions: dict[str, int] = {}
    trace: list[dict[str, Any]] = []
    started = time.monotonic()
    with (
        BentoServer(env=env, log_path=log_dir / f"{name}.log", start_timeout_s=args.start_timeout) as server,
        httpx.Client(base_url=server.url, timeout=args.request_timeout) as client,
    ):
        before = domain_status(client.get("/guardrails/status").json())
        if not before.get("enabled"):
            raise RuntimeError(f"{name}: the domain monitor is off: {before.get('reason')}")
        for start in range(0, len(texts), args.batch):
            batch = [{"text": t} for t in texts[start : start + args.batch]]
            response = client.post("/classify_batch", json={"items": batch})
            response.raise_for_status()
            batch_scores, batch_actions = _scores_of(response.json(), len(batch), name)
            scores.extend(batch_scores)
            for action in batch_actions:
                actions[action] = actions.get(action, 0) + 1
            domain = domain_status(client.get("/guardrails/status").json())
            trace.append(
                {
                    "sent": len(scores),
                    "scored": sum(1 for s in scores if s is not None),
                    **{k: domain.get(k) for k in ("alert", "alerts_raised", "n", "share", "share_lower", "status")},
                }
            )
        status = client.get("/guardrails/status").json()
        metrics = client.get("/metrics").text
    domain = domain_status(status)
    alert = first_alert(trace)
    return {
        "items": len(texts),
        "actions": actions,
        "seconds": round(time.monotonic() - started, 1),
        "models": {m["role"]: m["tag"] for m in status.get("models") or []},
        "responses": share_above(scores),
        "alert": alert,
        "alerted": alert is not None,
        "status": domain,
        "metrics": domain_metrics(metrics),
    }


# --- report ----------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def format_report(report: Mapping[str, Any]) -> str:
    lines = [
        f"{'set':16} {'items':>5} {'scored':>6} {'>1':>5} {'share >1':>8} {'median':>6}  "
        f"{'alert':>5} {'after items':>11}  status (n, share, lower, expected, checks, state)"
    ]
    for name, figures in report["sets"].items():
        responses, status, alert = figures["responses"], figures["status"], figures["alert"]
        lines.append(
            f"{name:16} {figures['items']:>5} {responses['scored']:>6} {responses['above']:>5} "
            f"{_pct(responses['share']):>8} {responses['median_score'] or 'n/a':>6}  "
            f"{'yes' if alert else 'no':>5} {alert['items'] if alert else '-':>11}  "
            f"n={status.get('n')} share={_pct(status.get('share'))} lower={_pct(status.get('share_lower'))} "
            f"expected={_pct(status.get('expected'))} checks={status.get('checks')} {status.get('status')}"
        )
    for name, why in (report.get("skipped") or {}).items():
        lines.append(f"{name:16} skipped: {why}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from loadtests._server import model_store

    parser = argparse.ArgumentParser(prog="python -m loadtests.domain_report", description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS), help="which sets, comma-separated")
    parser.add_argument("--policy", type=Path, default=None, help="policy file (default: the bundled one)")
    parser.add_argument("--classifier-tag", default=f"{CLASSIFIER_NAME}:latest", help="served classifier")
    parser.add_argument("--reviews", type=Path, default=None, help="the reviews CSV a 'bundled' build read")
    parser.add_argument("--sst2", type=Path, default=SST2_DEV, help="SST-2 dev.tsv")
    parser.add_argument("--davidson", type=Path, default=DAVIDSON, help="Davidson labeled_data.csv")
    parser.add_argument("--davidson-sample", type=int, default=2000, help="tweets sampled (seeded)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the Davidson sample")
    parser.add_argument("--batch", type=int, default=32, help="items per /classify_batch request")
    parser.add_argument("--limit", type=int, default=None, help="first N texts of each set (default: all)")
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--log-dir", type=Path, default=None, help="server logs (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="fairgate-domain-report-"))
    sets, info = text_sets(args, model_store())
    report: dict[str, Any] = {
        "store": str(model_store()),
        "policy": str(args.policy) if args.policy else "bundled default",
        "batch": args.batch,
        "davidson_sample": args.davidson_sample,
        "seed": args.seed,
        "log_dir": str(log_dir),
        **info,
        "sets": {},
    }
    for name, texts in sets.items():
        logger.info("%s: %d texts through a fresh server", name, len(texts))
        report["sets"][name] = run_set(name, texts, args, log_dir)
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
