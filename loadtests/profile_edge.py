"""Server CPU per ``/classify`` request, in process: the edge and BentoML's app without a socket.

``make bench`` measures a real server with real models, where the model dominates and the
machine's noise hides a few percent of Python overhead. This tool drives the ASGI app that a
BentoML worker serves (``service.to_asgi()``, with its lifespan, the worker's logging and
Prometheus in multiprocess mode, as in ``bentoml serve``) through ``httpx.ASGITransport``,
usually with the session's tiny models, and reports the CPU one request costs:

- ``cpu_ms``: the whole process (``time.process_time``) per request;
- ``loop_ms``: the event loop's thread alone (``time.thread_time``): HTTP, the edge
  middlewares, validation, serialisation; the rest is the batch thread (the models and the
  guardrails) and anything else the process runs.

The client (httpx) shares the event loop, so both figures include its cost too: the same
for every variant, so compare differences and ratios, not absolute values.

``--src DIR`` imports ``fairgate`` from ``DIR/fairgate`` instead of the installed package, so
two checkouts can be compared run for run (lay each out as the package with symlinks, as
``tests/setup/typecheck.sh`` does). ``--profile FILE`` writes cProfile statistics of the
event loop thread (``FILE``) and of the batch thread (``FILE.batch``) over the measured
requests and prints the top functions; ``--clock cpu`` (the default) times each function
in its thread's CPU time, which slows everything several times over, so read the profile
for where the time goes and take the figures from runs without ``--profile``.

Example, with tiny models in a store (``python -c "from tests.helpers.tiny_models import
save_tiny_store; print(save_tiny_store())"`` with ``BENTOML_HOME=/tmp/home`` prints the tags)::

    BENTOML_HOME=/tmp/home nice -n 10 .venv/bin/python -m loadtests.profile_edge \\
        --classifier-tag fairgate-classifier:abc --guard-tag fairgate-toxicity:def \\
        --requests 2000 --concurrency 1 --src /tmp/fgprof/old

Compare runs of one machine at one time only, alternating the variants (``--repeat`` runs
the measured phase several times in one process and reports each).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_TEXTS = (
    "the food was great and the staff were really nice",
    "terrible service, the delivery arrived late and broken",
    "i would recommend this product to my friends",
    "the movie was so slow i almost left",
    "good quality for the price, works as expected",
    "you are an idiot and your review is stupid",
    "she returned it because it never worked",
    "they were kind and the place was quiet",
)
_GROUPS = ("female", "male", "nonbinary", None)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--src", type=Path, help="import fairgate from DIR/fairgate (default: the installed one)")
    parser.add_argument("--classifier-tag", help="FAIRGATE_CLASSIFIER_TAG (default: the environment's)")
    parser.add_argument("--guard-tag", help="FAIRGATE_GUARD_TAG (default: the environment's)")
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per repetition")
    parser.add_argument("--warmup", type=int, default=300, help="requests before measuring")
    parser.add_argument("--concurrency", type=int, default=1, help="clients in a closed loop")
    parser.add_argument("--repeat", type=int, default=1, help="measured repetitions in this process")
    parser.add_argument("--path", default="/classify", choices=("/classify",), help="the route driven")
    parser.add_argument("--profile", type=Path, help="cProfile output (event loop; FILE.batch: batch thread)")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="the profiles' clock: each thread's CPU time (default; waits cost nothing) or wall time",
    )
    parser.add_argument("--top", type=int, default=25, help="functions printed per profile")
    parser.add_argument("--json", action="store_true", help="print one JSON line per repetition")
    return parser.parse_args(argv)


def _prepare_environment(args: argparse.Namespace) -> None:
    """The environment a BentoML worker sees, set before BentoML or fairgate is imported."""
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.classifier_tag:
        os.environ["FAIRGATE_CLASSIFIER_TAG"] = args.classifier_tag
    if args.guard_tag:
        os.environ["FAIRGATE_GUARD_TAG"] = args.guard_tag
    # bentoml serve gives each worker a Prometheus multiprocess directory (values in mmap files).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fairgate-profile-prom-")
    if args.src is not None:
        sys.path.insert(0, str(args.src.resolve()))


def _bodies() -> list[bytes]:
    bodies = []
    for index, text in enumerate(_TEXTS * 4):
        group = _GROUPS[index % len(_GROUPS)]
        payload: dict[str, Any] = {"text": text} if group is None else {"text": text, "group": group}
        bodies.append(json.dumps(payload, separators=(",", ":")).encode())
    return bodies


class _Lifespan:
    """Runs an ASGI app's lifespan (startup now, shutdown on ``stop``), as uvicorn does."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._started = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, Any]:
        return await self._inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            if message["type"].endswith("failed"):
                raise RuntimeError(f"lifespan startup failed: {message.get('message')}")
            self._started.set()
        elif message["type"].startswith("lifespan.shutdown"):
            self._stopped.set()

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.create_task(self._app(scope, self._receive, self._send))
        await self._inbox.put({"type": "lifespan.startup"})
        await self._started.wait()

    async def stop(self) -> None:
        await self._inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self._stopped.wait(), timeout=30)


def _batch_executor() -> Any:
    """The batch thread's executor of the service instance (None with FAIRGATE_BATCHING=bentoml)."""
    import bentoml

    instance = bentoml.get_current_service()
    batcher = getattr(instance, "_batcher", None)
    return getattr(batcher, "_executor", None)


async def _drive(client: Any, path: str, bodies: list[bytes], requests: int, concurrency: int) -> dict[str, int]:
    """``requests`` POSTs by ``concurrency`` closed-loop clients; the count of each status."""
    counts: dict[int, int] = {}
    next_index = 0
    headers = {"content-type": "application/json"}

    async def user() -> None:
        nonlocal next_index
        while next_index < requests:
            body = bodies[next_index % len(bodies)]
            next_index += 1
            response = await client.post(path, content=body, headers=headers)
            counts[response.status_code] = counts.get(response.status_code, 0) + 1

    await asyncio.gather(*(user() for _ in range(concurrency)))
    return {str(code): n for code, n in sorted(counts.items())}


def _print_profile(profile: cProfile.Profile, path: Path, title: str, top: int, requests: int) -> None:
    profile.dump_stats(str(path))
    print(f"\n== {title}: {path} (cumulative, top {top}; per-request us = cumtime / {requests})")
    stats = pstats.Stats(str(path))
    stats.sort_stats("cumulative").print_stats(top)
    print(f"== {title}: by own time")
    stats.sort_stats("tottime").print_stats(top)


async def _main(args: argparse.Namespace) -> int:
    import httpx
    from bentoml._internal.context import server_context
    from bentoml._internal.log import configure_server_logging

    configure_server_logging()
    server_context.worker_index = 1
    server_context.service_type = "entry_service"

    from fairgate.service import service as module

    svc: Any = module.Fairgate
    server_context.service_name = svc.name
    app = svc.to_asgi(is_main=True)
    lifespan = _Lifespan(app)
    await lifespan.start()
    transport = httpx.ASGITransport(app=app)
    bodies = _bodies()
    async with httpx.AsyncClient(transport=transport, base_url="http://profile.local") as client:
        deadline = time.monotonic() + 120
        while (await client.get("/readyz")).status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit("the service did not become ready within 120 s")
            await asyncio.sleep(0.05)
        counts = await _drive(client, args.path, bodies, args.warmup, args.concurrency)
        if set(counts) != {"200"}:
            raise SystemExit(f"warmup answered {counts}; expected only 200")
        executor = _batch_executor()
        for repetition in range(args.repeat):
            timer = time.thread_time if args.clock == "cpu" else time.perf_counter
            loop_profile = cProfile.Profile(timer) if args.profile else None
            batch_profile = cProfile.Profile(timer) if args.profile and executor is not None else None
            if batch_profile is not None:
                executor.submit(batch_profile.enable).result()
            if loop_profile is not None:
                loop_profile.enable()
            cpu0, loop0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
            counts = await _drive(client, args.path, bodies, args.requests, args.concurrency)
            cpu1, loop1, wall1 = time.process_time(), time.thread_time(), time.perf_counter()
            if loop_profile is not None:
                loop_profile.disable()
            if batch_profile is not None:
                executor.submit(batch_profile.disable).result()
            n = args.requests
            result = {
                "src": str(args.src) if args.src else "installed",
                "repetition": repetition,
                "requests": n,
                "concurrency": args.concurrency,
                "statuses": counts,
                "cpu_ms": round((cpu1 - cpu0) * 1000 / n, 4),
                "loop_ms": round((loop1 - loop0) * 1000 / n, 4),
                "batch_ms": round(((cpu1 - cpu0) - (loop1 - loop0)) * 1000 / n, 4),
                "wall_ms": round((wall1 - wall0) * 1000 / n, 4),
            }
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                print(
                    f"{result['src']} rep {repetition}: {result['cpu_ms']:.3f} ms CPU per request "
                    f"(event loop {result['loop_ms']:.3f}, other threads {result['batch_ms']:.3f}), "
                    f"wall {result['wall_ms']:.3f} ms, statuses {counts}",
                    flush=True,
                )
            if loop_profile is not None and args.profile is not None:
                _print_profile(loop_profile, args.profile, "event loop", args.top, n)
            if batch_profile is not None and args.profile is not None:
                _print_profile(batch_profile, Path(f"{args.profile}.batch"), "batch thread", args.top, n)
    await lifespan.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _prepare_environment(args)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
