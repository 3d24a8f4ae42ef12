"""The audit trail survives SIGKILL: every flag/block the clients were answered is in the store.

Two workers append to one SQLite file while six clients send mixed traffic; the whole
process group is SIGKILLed mid-load. ``fairgate audit export`` then reads the store, and
every request id a client received with action flag or block must be in it. The server
is restarted on the same store and keeps appending.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from loadtests._server import REPO_ROOT as REPO
from loadtests._server import BentoServer
from tests.integration.reliability._server import Texts

pytestmark = [pytest.mark.server, pytest.mark.timeout(240)]

LOAD_SECONDS = 5.0


def export(db: Path) -> list[dict]:
    """The store as ``fairgate audit export`` writes it."""
    done = subprocess.run(
        [sys.executable, "-m", "fairgate.service.cli", "audit", "export", "--since", "1d", "--db", str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_answered_decisions_are_in_the_store_after_sigkill(start_server, texts: Texts) -> None:
    server: BentoServer = start_server("audit-kill", FAIRGATE_WORKERS="2", FAIRGATE_MAX_CONCURRENCY="64")
    server.wait_ready()
    db = server.workdir / "audit.sqlite3"
    answered: dict[str, tuple[str, str]] = {}  # request id -> (action, text) as the client saw it
    answers = {"allow": 0, "flag": 0, "block": 0}
    lock = threading.Lock()
    stop = threading.Event()
    kinds = [texts.allow, texts.flag, texts.block]

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                items = [{"text": rng.choice(kinds), "group": rng.choice(["female", "male", None])} for _ in range(rng.randint(1, 4))]
                try:
                    if len(items) == 1:
                        response = http.post(server.url + "/classify", json=items[0])
                        results = [response.json()] if response.status_code == 200 else []
                    else:
                        response = http.post(server.url + "/classify_batch", json={"items": items})
                        results = response.json() if response.status_code == 200 else []
                except (httpx.HTTPError, ValueError):
                    continue  # the kill: no answer, nothing to compare
                with lock:
                    for item, result in zip(items, results, strict=True):
                        answers[result["action"]] += 1
                        if result["action"] in ("flag", "block"):
                            answered[result["request_id"]] = (result["action"], item["text"])

    threads = [threading.Thread(target=client, args=(seed,), daemon=True) for seed in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(LOAD_SECONDS)
    server.kill()  # SIGKILL to the group while requests are in flight
    stop.set()
    for thread in threads:
        thread.join(timeout=15)

    records = export(db)
    stored = {record["request_id"]: record for record in records}
    figures = {
        "answered_allow": answers["allow"],
        "answered_flag": answers["flag"],
        "answered_block": answers["block"],
        "answered_flag_or_block": len(answered),
        "stored": len(stored),
        "answered_missing_from_store": len(set(answered) - set(stored)),
        "stored_but_not_answered": len(set(stored) - set(answered)),
    }
    (server.workdir / "audit_kill.json").write_text(json.dumps(figures, indent=1), encoding="utf-8")
    print(json.dumps(figures))
    assert answers["flag"] > 20 and answers["block"] > 20, figures
    assert set(answered) <= set(stored), figures
    for request_id, (action, text) in answered.items():
        record = stored[request_id]
        assert record["action"] == action
        assert record["text_sha256"] == hashlib.sha256(text.encode()).hexdigest()
        assert record["text"] is None  # raw text only when opted in
        assert record["policy_version"] == texts.version
        assert set(record["models"]) == {"classifier", "guard"}
    assert all(record["action"] in ("flag", "block") for record in records)

    # Restart on the same store: it opens cleanly and keeps appending.
    server.start()
    server.wait_ready()
    response = httpx.post(server.url + "/classify", json={"text": texts.block}, timeout=10)
    assert response.status_code == 200, (response.status_code, response.text, server.log_tail())
    blocked = response.json()
    assert blocked["action"] == "block"
    after = {record["request_id"] for record in export(db)}
    assert after == set(stored) | {blocked["request_id"]}
