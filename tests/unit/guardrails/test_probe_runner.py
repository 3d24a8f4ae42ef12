"""BackgroundProbe: the counterfactual probe's background thread and bounded queue.

What must hold: ``submit`` never blocks the request that calls it, a full queue drops and
counts instead of growing, jobs run in order on one other thread at the lowest CPU
priority, a failing job does not stop the next, and ``close`` drains and stops.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import pytest

from fairgate.guardrails.probe_runner import LOWEST_PRIORITY, BackgroundProbe

WAIT_S = 10.0


def test_jobs_run_in_order_on_one_background_thread() -> None:
    runner = BackgroundProbe(max_batches=4)
    seen: list[tuple[int, str]] = []
    for k in range(10):
        while not runner.submit(lambda k=k: seen.append((k, threading.current_thread().name))):
            assert runner.wait(WAIT_S)
    assert runner.wait(WAIT_S)
    assert [k for k, _ in seen] == list(range(10))
    assert {name for _, name in seen} == {"fairgate-probe"}
    assert runner.done == 10 and runner.pending == 0
    runner.close()


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    dropped: list[int] = []
    runner = BackgroundProbe(max_batches=2, on_dropped=lambda: dropped.append(1))
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocking() -> None:
        started.set()
        assert release.wait(WAIT_S)
        ran.append("first")

    assert runner.submit(blocking)
    assert started.wait(WAIT_S)  # the thread holds the first job: the queue is empty again
    assert runner.submit(lambda: ran.append("second"))
    assert runner.submit(lambda: ran.append("third"))
    # Full: these return at once, run never, and are counted.
    assert not runner.submit(lambda: ran.append("fourth"))
    assert not runner.submit(lambda: ran.append("fifth"))
    assert runner.dropped == 2 and len(dropped) == 2
    assert runner.pending == 3
    assert not runner.wait(0.05)  # still running the first
    release.set()
    assert runner.wait(WAIT_S)
    assert ran == ["first", "second", "third"]
    assert runner.pending == 0 and runner.done == 3
    runner.close()


def test_a_failing_job_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    runner = BackgroundProbe(max_batches=4)
    ran: list[int] = []

    def failing() -> None:
        raise RuntimeError("model exploded")

    with caplog.at_level(logging.ERROR, logger="fairgate.guardrails.probe_runner"):
        assert runner.submit(failing)
        assert runner.submit(lambda: ran.append(1))
        assert runner.wait(WAIT_S)
    assert ran == [1] and runner.done == 2
    assert any("probe failed" in r.getMessage() for r in caplog.records)
    runner.close()


def test_a_failing_drop_counter_does_not_fail_the_submit(caplog: pytest.LogCaptureFixture) -> None:
    def broken_counter() -> None:
        raise ValueError("registry gone")

    runner = BackgroundProbe(max_batches=1, on_dropped=broken_counter)
    release = threading.Event()
    started = threading.Event()
    assert runner.submit(lambda: (started.set(), release.wait(WAIT_S)))
    assert started.wait(WAIT_S)
    assert runner.submit(lambda: None)
    with caplog.at_level(logging.ERROR, logger="fairgate.guardrails.probe_runner"):
        assert runner.submit(lambda: None) is False
    assert runner.dropped == 1
    release.set()
    runner.close()


def test_close_runs_what_is_queued_then_refuses_new_jobs() -> None:
    runner = BackgroundProbe(max_batches=8)
    ran: list[int] = []
    for k in range(5):
        assert runner.submit(lambda k=k: ran.append(k))
    runner.close()
    assert ran == [0, 1, 2, 3, 4]
    assert runner.submit(lambda: ran.append(99)) is False
    assert ran == [0, 1, 2, 3, 4]
    runner.close()  # twice is fine


def test_building_one_starts_no_thread() -> None:
    before = {t.name for t in threading.enumerate()}
    runner = BackgroundProbe(max_batches=2, name="fairgate-probe-unstarted")
    assert "fairgate-probe-unstarted" not in {t.name for t in threading.enumerate()} - before
    runner.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_the_probe_thread_runs_at_the_lowest_priority_and_the_caller_keeps_its_own() -> None:
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    runner = BackgroundProbe(max_batches=2)
    seen: list[int] = []
    assert runner.submit(lambda: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    assert runner.wait(WAIT_S)
    assert seen == [max(mine, LOWEST_PRIORITY)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
    runner.close()


def test_a_queue_of_no_batches_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batches=0 must be at least 1"):
        BackgroundProbe(max_batches=0)
