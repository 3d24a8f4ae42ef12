"""Workers that open one new audit file at the same moment all get it (no "database is locked")."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from fairgate.service.audit import AuditError, SQLiteAuditStore, _retry_while_locked


def _open(path: str, barrier, results) -> None:  # runs in a child process
    barrier.wait()
    try:
        SQLiteAuditStore(path=path)
        results.put("ok")
    except AuditError as error:
        results.put(str(error))


def test_three_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """BentoML starts its workers together. Before the retry, 11 of 90 such opens failed."""
    context = multiprocessing.get_context("fork")
    outcomes: list[str] = []
    for trial in range(15):
        path = str(tmp_path / f"audit{trial}.sqlite3")
        barrier, results = context.Barrier(3), context.Queue()
        workers = [context.Process(target=_open, args=(path, barrier, results)) for _ in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
        outcomes += [results.get(timeout=5) for _ in workers]
    assert outcomes == ["ok"] * 45, [o for o in outcomes if o != "ok"][:3]


def test_a_locked_step_is_retried_until_it_succeeds() -> None:
    calls = []

    def step() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")

    _retry_while_locked(step, timeout_s=5.0)
    assert len(calls) == 3


def test_other_errors_are_not_retried_and_a_lock_that_stays_gives_up() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise sqlite3.OperationalError("no such table: audit_decisions")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        _retry_while_locked(broken, timeout_s=5.0)
    assert len(calls) == 1

    def always_locked() -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _retry_while_locked(always_locked, timeout_s=0.1)
