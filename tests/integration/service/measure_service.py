"""Measure the service once: /classify latency (sequential) and throughput (16 clients),
with the guardrails on (the default policy) and off (a policy with ``enabled: false``).

    .venv/bin/python -m tests.integration.service.measure_service [--calls 1000] [--clients 16]

Uses the models the store's tags name (FAIRGATE_CLASSIFIER_TAG / FAIRGATE_GUARD_TAG,
default the :latest defaults) and prints one JSON line per configuration. Not a test
(no ``test_`` prefix): it takes minutes and its figures depend on the machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batching", default="queue", choices=("queue", "bentoml"))
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="fairgate-measure-"))
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
