"""An embedded guard used from several threads: windows hold exactly what was sent, no check is lost."""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry

from fairgate.guardrails.guard import Guard
from fairgate.guardrails.policy import Policy

THREADS = 8
BATCHES = 50
# One batch: two items per group, one of each label, so whole batches keep n_a == n_b == 2 * positives.
TEXTS = ["one", "two", "three", "four"]
GROUPS = ["a", "a", "b", "b"]
LABELS = ["negative", "positive", "negative", "positive"]


def _guard() -> Guard:
    policy = Policy.from_mapping(
        {
            "version": "concurrency",
            "groups": {"source": "request", "allowed": ["a", "b"]},
            "toxicity": {"enabled": False},
            # A check every 4 outcomes: every batch makes one due, the most contended case.
            "rates": {"window": {"size": 1000}, "checks_per_window": 250, "min_samples": 10},
        }
    )
    return Guard(policy=policy, scorer=None, registry=CollectorRegistry())


def _counts(guard: Guard) -> dict[str, tuple[int, int]]:
    monitor = next(m for m in guard.status().monitors if m.name == "negative")
    return {g.group: (g.n, g.positives) for g in monitor.groups if g.group in ("a", "b")}


def _run_threads(target: Any, count: int) -> None:
    start = threading.Barrier(count)

    def run() -> None:
        start.wait()
        target()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)


def test_concurrent_reviews_count_every_item_and_run_every_check() -> None:
    guard = _guard()
    seen: list[dict[str, tuple[int, int]]] = []
    done = threading.Event()

    def send() -> None:
        for _ in range(BATCHES):
            guard.review(guard.screen(TEXTS, GROUPS), LABELS)

    def watch() -> None:
        while not done.is_set():
            seen.append(_counts(guard))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        _run_threads(send, THREADS)
    finally:
        done.set()
        watcher.join(timeout=10)

    sent = THREADS * BATCHES * 2
    assert _counts(guard) == {"a": (sent, sent // 2), "b": (sent, sent // 2)}
    monitor = next(m for m in guard.monitors if m.name == "negative")
    assert monitor.checks == THREADS * BATCHES, "two batches never settle one due check between them"
    assert seen, "the status reader ran while batches were reviewed"
    for counts in seen:  # every status read saw whole batches
        (n_a, p_a), (n_b, p_b) = counts["a"], counts["b"]
        assert n_a == n_b == 2 * p_a == 2 * p_b


def test_holding_the_guard_lock_makes_several_calls_one_unit() -> None:
    guard = _guard()
    reviewed = threading.Event()

    def review() -> None:
        guard.review(guard.screen(TEXTS, GROUPS), LABELS)
        reviewed.set()

    with guard.lock:
        screens = guard.screen(TEXTS, GROUPS)
        other = threading.Thread(target=review)
        other.start()
        assert not reviewed.wait(0.2), "another thread's review waits for the lock"
        guard.review(screens, LABELS)  # reentrant: the guard's own locking nests
        assert _counts(guard) == {"a": (2, 1), "b": (2, 1)}
    other.join(timeout=10)
    assert reviewed.is_set()
    assert _counts(guard) == {"a": (4, 2), "b": (4, 2)}
