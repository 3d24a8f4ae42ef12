"""Measure the service once: /classify latency (sequential) and throughput (16 clients),
with the guardrails on (the default policy) and off (a policy with ``enabled: false``).

    .venv/bin/python -m tests.integration.service.measure_service [--calls 1000] [--clients 16]

Uses the models the store's tags name (FAIRGATE_CLASSIFIER_TAG / FAIRGATE_GUARD_TAG,
default the :latest defaults) and prints one JSON line per configuration. Not a test
(no ``test_`` prefix): it takes minutes and its figures depend on the machine.

``--explain-compare`` measures instead what ``"explain": true`` costs (issue 13): ONE
server (the default policy, or ``--policy``), sequential ``/classify`` calls alternating
explain off and on over the same texts (the order within each pair alternates too), so
the machine's noise falls on both alike; ``--calls`` is the number of calls of each.
The texts are ordinary sentences and abusive ones the guard flags or blocks (there the
explanation covers each acting toxicity category, and the label when not blocked); each
text is put in a class by the action the server actually returned, and p50/p99/mean of
both settings and their ratio are printed per class and overall.

    BENTOML_HOME=/work/bentoml-after .venv/bin/python -m tests.integration.service.measure_service \
        --explain-compare --calls 600
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from loadtests._server import BentoServer

TEXTS = (
    ("The staff were friendly and the food was great.", "female"),
    ("Terrible service, I waited an hour and nobody apologised.", "male"),
    ("The film was long but the ending made it worth it.", None),
    ("You are an idiot and I will hurt you.", "nonbinary"),
)


# --explain-compare: ordinary review-like sentences and abusive ones (the class printed is
# the action the server returned, not this split: blocked items explain the acting
# categories only, flagged ones those and the label, allowed ones the label).
EXPLAIN_TEXTS = (
    "The staff were friendly and the food was great.",
    "Terrible service, I waited an hour and nobody apologised.",
    "The film was long but the ending made it worth it.",
    "a gorgeous , witty , seductive movie .",
    "the plot is nothing but boilerplate cliches from start to finish , and the acting is flat .",
    "My sister and her wife loved the museum, though the cafe was overpriced and the queue was slow.",
    "You are an idiot and I will hurt you.",
    "Shut up, you stupid worthless moron.",
    "I am going to find you and kill you.",
    "You are a disgusting pathetic loser and everyone hates you.",
    "That was a damn stupid idea.",  # flagged, not blocked, by the bundled guard (toxicity ~0.8)
    "Shut up already, nobody asked you.",
)
CLASSES = {"allow": "ordinary (allow)", "flag": "abusive (flag)", "block": "abusive (block)"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def sequential(url: str, calls: int) -> dict[str, float]:
    latencies = []
    with httpx.Client(timeout=60) as client:
        for i in range(20):  # warm-up, not counted
            client.post(url + "/classify", json={"text": TEXTS[i % 4][0], "group": TEXTS[i % 4][1]})
        for i in range(calls):
            text, group = TEXTS[i % len(TEXTS)]
            started = time.perf_counter()
            response = client.post(url + "/classify", json={"text": text, "group": group})
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return {
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
    }


def concurrent(url: str, clients: int, per_client: int) -> dict[str, float]:
    def run(_: int) -> tuple[int, int]:
        ok = bad = 0
        with httpx.Client(timeout=60) as client:
            for i in range(per_client):
                text, group = TEXTS[i % len(TEXTS)]
                code = client.post(url + "/classify", json={"text": text, "group": group}).status_code
                ok, bad = (ok + 1, bad) if code == 200 else (ok, bad + 1)
        return ok, bad

    started = time.perf_counter()
    with futures.ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(run, range(clients)))
    elapsed = time.perf_counter() - started
    ok = sum(o for o, _ in outcomes)
    return {"rps": round(ok / elapsed, 1), "ok": ok, "errors": sum(b for _, b in outcomes), "seconds": round(elapsed, 1)}


def _latency_figures(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "mean_ms": round(statistics.fmean(values), 2),
    }


def explain_compare(url: str, calls: int) -> dict[str, object]:
    """``calls`` sequential /classify calls with explain off and as many with it on, alternating."""
    texts = EXPLAIN_TEXTS
    seen: dict[str, dict[str, object]] = {}
    with httpx.Client(timeout=60) as client:
        for text in texts:  # what each text gets (and checks the field is there only when asked)
            plain = client.post(url + "/classify", json={"text": text, "explain": False}).json()
            explained = client.post(url + "/classify", json={"text": text, "explain": True}).json()
            if plain.get("explanation") is not None or explained.get("explanation") is None:
                raise RuntimeError(f"explain did not switch the explanation for {text!r}: {explained}")
            labels = explained["explanation"]["labels"]
            seen[text] = {
                "action": explained["action"],
                "class": CLASSES[explained["action"]],
                "words": explained["explanation"]["words_occluded"],
                "explained": [f'{x["model"]}:{x["label"]}' for x in labels],
            }
        for i in range(4 * len(texts)):  # warm-up, not counted
            client.post(url + "/classify", json={"text": texts[i % len(texts)], "explain": bool(i % 2)})
        latencies: dict[tuple[str, bool], list[float]] = {}
        for i in range(calls):
            text = texts[i % len(texts)]
            for explain in (False, True) if i % 2 == 0 else (True, False):
                started = time.perf_counter()
                response = client.post(url + "/classify", json={"text": text, "explain": explain})
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                for key in (str(seen[text]["class"]), "all"):
                    latencies.setdefault((key, explain), []).append(elapsed)
    classes = {}
    for key in dict.fromkeys(k for k, _ in latencies):
        off, on = _latency_figures(latencies[(key, False)]), _latency_figures(latencies[(key, True)])
        classes[key] = {
            "explain_off": off,
            "explain_on": on,
            "ratio_on_over_off": {m: round(on[m] / off[m], 3) for m in ("p50_ms", "p99_ms", "mean_ms")},
        }
    return {"texts": seen, "classes": classes}


def _print_explain_table(report: dict[str, object]) -> None:
    texts = report["texts"]
    assert isinstance(texts, dict)
    print("texts (action with explain on; words occluded; labels explained):")
    for text, info in texts.items():
        print(f'  [{info["action"]:5}] {info["words"]:2} words, {", ".join(info["explained"]) or "-"}: {text[:70]}')
    print(f'{"class":22} {"explain":7} {"n":>5} {"p50 ms":>8} {"p99 ms":>8} {"mean ms":>8}')
    classes = report["classes"]
    assert isinstance(classes, dict)
    for key, figures in classes.items():
        for setting in ("explain_off", "explain_on"):
            f = figures[setting]
            print(f'{key:22} {setting[8:]:7} {f["n"]:5} {f["p50_ms"]:8.2f} {f["p99_ms"]:8.2f} {f["mean_ms"]:8.2f}')
        r = figures["ratio_on_over_off"]
        print(f'{key:22} {"on/off":7} {"":5} {r["p50_ms"]:8.3f} {r["p99_ms"]:8.3f} {r["mean_ms"]:8.3f}')


def run_explain_compare(args: argparse.Namespace, scratch: Path) -> None:
    env = {"FAIRGATE_WORKERS": str(args.workers), "FAIRGATE_BATCHING": args.batching}
    if args.policy:
        env["FAIRGATE_POLICY"] = str(args.policy)
    with BentoServer(env=env, log_path=scratch / "serve.log", start_timeout_s=300) as server:
        status = httpx.get(server.url + "/guardrails/status", timeout=10).json()
        report: dict[str, object] = {
            "config": "explain_compare",
            "models": {m["role"]: f'{m["tag"]} ({m["variant"]})' for m in status["models"]},
            "policy": args.policy or "default",
            "workers": args.workers,
            "calls_each": args.calls,
            "load_avg_at_start": list(os.getloadavg()),
        }
        report.update(explain_compare(server.url, args.calls))
        report["load_avg_at_end"] = list(os.getloadavg())
    _print_explain_table(report)
    print(json.dumps(report), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batching", default="queue", choices=("queue", "bentoml"))
    parser.add_argument(
        "--explain-compare",
        action="store_true",
        help='instead: p50/p99 of /classify with "explain" off and on, alternating on one server',
    )
    parser.add_argument("--policy", default=None, help="--explain-compare: policy YAML (default: the bundled one)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="fairgate-measure-"))
    if args.explain_compare:
        run_explain_compare(args, scratch)
        return
    off = scratch / "guardrails_off.yaml"
    off.write_text('version: "off"\nenabled: false\n', encoding="utf-8")
    for name, policy in (("guardrails_on", None), ("guardrails_off", off)):
        env = {"FAIRGATE_WORKERS": str(args.workers), "FAIRGATE_BATCHING": args.batching}
        if policy is not None:
            env["FAIRGATE_POLICY"] = str(policy)
        run_dir = scratch / name
        run_dir.mkdir()
        with BentoServer(env=env, log_path=run_dir / "serve.log", start_timeout_s=300) as server:
            status = httpx.get(server.url + "/guardrails/status", timeout=10).json()
            while not status["ready"]:  # readiness is per worker: wait for every worker
                time.sleep(0.5)
                status = httpx.get(server.url + "/guardrails/status", timeout=10).json()
            report = {
                "config": name,
                "models": {m["role"]: f'{m["tag"]} ({m["variant"]})' for m in status["models"]},
                "workers": args.workers,
                "batching": args.batching,
                "sequential": sequential(server.url, args.calls),
                "concurrent": {"clients": args.clients, **concurrent(server.url, args.clients, args.per_client)},
            }
            metrics = httpx.get(server.url + "/metrics", timeout=10).text
            batch = [line for line in metrics.splitlines() if line.startswith("fairgate_batch_size_") and 'stage="request"' in line and not line.startswith("fairgate_batch_size_bucket")]
            report["request_batches"] = batch
            print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
