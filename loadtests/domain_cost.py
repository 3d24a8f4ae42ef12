"""``python -m loadtests.domain_cost``: what the domain-shift monitor costs per batch.

In this process, no model needed: a reference of ``--dim`` dimensions and ``--classes``
classes is fitted on seeded Gaussian data, then :meth:`DomainReference.score` (the one
matrix product per batch) and :meth:`DomainMonitor.review` (score, histogram, window,
scheduled checks) are timed on batches of each ``--batch`` size. Prints one JSON line
per batch size, with the ``OPENBLAS_NUM_THREADS`` the process ran with: run it with
``OPENBLAS_NUM_THREADS=1`` and without to see what the serving setting buys.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m loadtests.domain_cost --batch 1 32 128
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    import numpy as np
    from prometheus_client import CollectorRegistry

    from fairgate.guardrails.domain import fit_domain_reference
    from fairgate.guardrails.domain_monitor import DomainMonitor
    from fairgate.guardrails.metrics import GuardMetrics
    from fairgate.guardrails.policy import DomainPolicy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=384, help="embedding dimensions (MiniLM: 384)")
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--repeats", type=int, default=500)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    train = rng.normal(size=(5000, args.dim))
    reference, _ = fit_domain_reference(
        train, rng.integers(0, args.classes, 5000), classes=[f"c{i}" for i in range(args.classes)]
    )
    reference = reference.with_validation(reference.score(rng.normal(size=(500, args.dim))), variant="int8")
    monitor = DomainMonitor(
        reference=reference, policy=DomainPolicy(), metrics=GuardMetrics(registry=CollectorRegistry(), groups=[])
    )
    for size in args.batch:
        batch = rng.normal(size=(size, args.dim)).astype(np.float32)
        timings = {}
        for name, call in (("score", reference.score), ("review", monitor.review)):
            started = time.perf_counter()
            for _ in range(args.repeats):
                call(batch)
            timings[f"{name}_ms"] = round((time.perf_counter() - started) / args.repeats * 1000, 3)
        print(json.dumps({
            "batch": size, "dim": args.dim, "classes": args.classes,
            "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
            "load_average": round(os.getloadavg()[0], 1), **timings,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
